-- The consent ledger: one row per grant or withdrawal, appended, never
-- changed (an UPDATE is refused by a trigger, migration 0010; rows go only with the
-- person, on erasure). Each subject's events form a chain: seq counts from
-- 1 and hash is a keyed MAC (tenant key) over the previous hash and the
-- event, so an edited, removed or reordered event breaks the chain, and
-- every event's (seq, hash) is also in the audit trail. receipt is the
-- signed receipt given out for the event. Where the consent
-- came from (source, truncated IP) is sealed under the subject's key.
CREATE TABLE consent_events (
    tenant_id       TEXT NOT NULL,
    id              TEXT NOT NULL,
    subject_id      TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    purpose_id      TEXT NOT NULL,
    purpose_key     TEXT NOT NULL,
    notice_version  INTEGER NOT NULL,
    notice_hash     TEXT NOT NULL,
    action          TEXT NOT NULL,
    method          TEXT NOT NULL,
    origin_ct       BYTEA NOT NULL,
    created_at      BIGINT NOT NULL,
    valid_until     BIGINT NOT NULL,
    prev_hash       BYTEA NOT NULL,
    hash            BYTEA NOT NULL,
    receipt         TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, subject_id, seq)
);

-- The current state per subject and purpose: the last event, kept beside
-- the ledger so that "who has no valid consent" is one indexed query.
CREATE TABLE consent_state (
    tenant_id    TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    purpose_id   TEXT NOT NULL,
    action       TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    at           BIGINT NOT NULL,
    valid_until  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, subject_id, purpose_id)
);
CREATE INDEX consent_state_by_purpose ON consent_state (tenant_id, purpose_id, action, valid_until);
