-- Outgoing mail. message_ct (recipient, subject line, body) is sealed under
-- the recipient's subject key: nothing personal is readable here, and an
-- erased recipient's queued mail can no longer be read or sent.
CREATE TABLE mail_outbox (
    tenant_id   TEXT NOT NULL,
    id          TEXT NOT NULL,
    subject_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    message_ct  BYTEA NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     BIGINT NOT NULL,
    sent_at     BIGINT NOT NULL DEFAULT 0,
    failed_at   BIGINT NOT NULL DEFAULT 0,
    last_error  TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX mail_outbox_due ON mail_outbox (sent_at, failed_at, next_at);
