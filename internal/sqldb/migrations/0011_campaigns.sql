-- Consent refresh campaigns: a purpose, an audience chosen when the
-- campaign starts, and one recipient row per contact mailed. The link in
-- each mail carries a 256-bit secret; only its SHA-256 is kept. A link is
-- answered once (answered_at) and expires at expires_at. mail_id is the
-- outbox row, whose sent_at/failed_at say whether the mail left or bounced.
-- no_email and pending count the contacts of the audience left out: without
-- an email address, or holding an open link for the purpose already.
CREATE TABLE consent_campaigns (
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    id             TEXT NOT NULL,
    name           TEXT NOT NULL,
    purpose_id     TEXT NOT NULL,
    purpose_key    TEXT NOT NULL,
    notice_version INTEGER NOT NULL,
    audience       TEXT NOT NULL,
    expires_at     BIGINT NOT NULL,
    no_email       INTEGER NOT NULL,
    pending        INTEGER NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE consent_campaign_recipients (
    tenant_id    TEXT NOT NULL,
    campaign_id  TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    token_hash   BYTEA NOT NULL,
    mail_id      TEXT NOT NULL,
    answer       TEXT NOT NULL DEFAULT '',
    answered_at  BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id, subject_id),
    FOREIGN KEY (tenant_id, campaign_id) REFERENCES consent_campaigns (tenant_id, id)
);
CREATE UNIQUE INDEX consent_campaign_recipients_by_token ON consent_campaign_recipients (token_hash);
CREATE INDEX consent_campaign_recipients_by_subject ON consent_campaign_recipients (tenant_id, subject_id);
