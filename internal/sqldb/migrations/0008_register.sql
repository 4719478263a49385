-- The processing register (Art. 30): one row per purpose of processing,
-- with its legal basis and the categories, recipients, transfers and
-- retention the controller must record. This is organisational data, not
-- personal data, and is kept in clear. List-valued fields are JSON arrays.
CREATE TABLE purposes (
    tenant_id           TEXT NOT NULL,
    id                  TEXT NOT NULL,
    key                 TEXT NOT NULL,
    name                TEXT NOT NULL,
    description         TEXT NOT NULL,
    legal_basis         TEXT NOT NULL,
    special_conditions  TEXT NOT NULL,
    data_categories     TEXT NOT NULL,
    subject_categories  TEXT NOT NULL,
    recipients          TEXT NOT NULL,
    transfers           TEXT NOT NULL,
    retention_days      INTEGER NOT NULL,
    consent_valid_days  INTEGER NOT NULL,
    notice_version      INTEGER NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, key)
);

-- Notice texts shown to people when their consent is asked, versioned per
-- purpose: a changed text is a new version, never an edit. The SHA-256 of
-- the text is what consent events and receipts refer to.
CREATE TABLE notice_versions (
    tenant_id   TEXT NOT NULL,
    purpose_id  TEXT NOT NULL,
    version     INTEGER NOT NULL,
    text        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, purpose_id, version)
);
