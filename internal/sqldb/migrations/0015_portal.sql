-- The public privacy portal, delivery of access exports, restriction,
-- objection and account closure.

-- A request made on the portal before its email address is confirmed. It
-- is not a request yet: it becomes one, verified, when the link mailed to
-- the address is used, and is deleted then or when it expires. What it
-- says (address, details) is sealed under a key of its own, in
-- subject_keys under the intake's id, destroyed with it; email_bidx lets
-- an erasure of the same person find and remove it, and bounds how many
-- an address can have pending.
CREATE TABLE portal_intakes (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    id           TEXT NOT NULL,
    token_hash   BYTEA NOT NULL,
    type         TEXT NOT NULL,
    email_bidx   BYTEA NOT NULL,
    intake_ct    BYTEA NOT NULL,
    expires_at   BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX portal_intakes_by_token ON portal_intakes (token_hash);
CREATE INDEX portal_intakes_by_email ON portal_intakes (tenant_id, email_bidx);
CREATE INDEX portal_intakes_by_expiry ON portal_intakes (expires_at);

-- The purposes an objection or a consent withdrawal names (JSON list of
-- purpose keys; empty: all that apply), and what applying it did.
ALTER TABLE data_requests ADD COLUMN purposes TEXT NOT NULL DEFAULT '[]';

-- Single-use, expiring links that deliver an access or portability export
-- to the requester. Only the SHA-256 of the link's secret is kept; the zip
-- is made when the link is used, never stored.
CREATE TABLE download_links (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    id           TEXT NOT NULL,
    token_hash   BYTEA NOT NULL,
    request_id   TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX download_links_by_token ON download_links (token_hash);
CREATE INDEX download_links_by_subject ON download_links (tenant_id, subject_id);

-- Restriction of processing (Art. 18): since when, and why (sealed).
ALTER TABLE subjects ADD COLUMN restricted_since BIGINT NOT NULL DEFAULT 0;
ALTER TABLE subjects ADD COLUMN restriction_ct BYTEA;

-- Objections (Art. 21) to processing based on legitimate interests or a
-- public task: processing for the purpose stops until an admin decides.
CREATE TABLE objections (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    subject_id   TEXT NOT NULL,
    purpose_key  TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    decided_at   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, subject_id, purpose_key)
);
CREATE INDEX objections_by_status ON objections (tenant_id, status);

-- Closing one's own account: erased at closes_at unless cancelled.
ALTER TABLE users ADD COLUMN closes_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN closure_grace_days INTEGER NOT NULL DEFAULT 30;
