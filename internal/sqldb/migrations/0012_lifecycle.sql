-- A contact's life: hard bounces (reported through the API or by the SMTP
-- server) make its address non-working; after the tenant's period it turns
-- inactive; a legal hold keeps it from any deletion; retention policies
-- erase or anonymise contacts once a trigger date is old enough.
ALTER TABLE subjects ADD COLUMN last_activity_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE subjects ADD COLUMN bouncing_since BIGINT NOT NULL DEFAULT 0;
ALTER TABLE subjects ADD COLUMN inactive_since BIGINT NOT NULL DEFAULT 0;
ALTER TABLE subjects ADD COLUMN held_since BIGINT NOT NULL DEFAULT 0;
ALTER TABLE subjects ADD COLUMN hold_ct BYTEA;
UPDATE subjects SET last_activity_at = updated_at;
CREATE INDEX subjects_by_status ON subjects (tenant_id, status, inactive_since);

-- Bounces: what the mail system said, by code (never the message, which may
-- quote the address).
CREATE TABLE subject_bounces (
    tenant_id   TEXT NOT NULL,
    id          TEXT NOT NULL,
    subject_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    source      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    mail_id     TEXT NOT NULL,
    at          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX subject_bounces_by_subject ON subject_bounces (tenant_id, subject_id, at);

-- Retention policies of a tenant. data_categories (JSON list of taxonomy
-- keys) narrows an anonymisation to those fields.
CREATE TABLE retention_policies (
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    id               TEXT NOT NULL,
    name             TEXT NOT NULL,
    status           TEXT NOT NULL,
    trigger_on       TEXT NOT NULL,
    period_days      INTEGER NOT NULL,
    action           TEXT NOT NULL,
    data_categories  TEXT NOT NULL,
    enabled          INTEGER NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
