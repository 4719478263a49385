-- One-time links sent by mail (or printed by the CLI): invitations and
-- password resets. The link carries a 256-bit secret; only its SHA-256 is
-- kept. A link is used at most once (used_at set by a conditional UPDATE in
-- the transaction that acts on it), and a newer link of the same purpose
-- for the same user ends older unused ones (expires_at set to its creation).
CREATE TABLE account_links (
    tenant_id   TEXT NOT NULL,
    id          TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    hash        BYTEA NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX account_links_user ON account_links (tenant_id, user_id, purpose, created_at);
