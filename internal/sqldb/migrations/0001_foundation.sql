-- Foundation: tenants, their keys, data subjects, users, API tokens and the
-- audit chain. Times are BIGINT microseconds since the Unix epoch (UTC).
-- Columns ending in _ct hold AES-256-GCM ciphertext; _bidx hold blind indexes
-- (HMAC-SHA-256). No personal data value is stored in clear.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    region      TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Tenant key-encryption keys, wrapped by the master key. Several versions
-- live side by side during a rotation; the one in state 'active' wraps new keys.
CREATE TABLE tenant_keys (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    version     INTEGER NOT NULL,
    state       TEXT NOT NULL,
    wrapped     BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

-- Other per-tenant secrets wrapped by the master key: the blind-index key and
-- the audit signing key (whose public half is kept in clear).
CREATE TABLE tenant_secrets (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    wrapped     BYTEA NOT NULL,
    public      BYTEA,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- One data key per data subject, wrapped by a tenant key. Deleting the row
-- crypto-shreds everything encrypted under it.
CREATE TABLE subject_keys (
    tenant_id   TEXT NOT NULL,
    subject_id  TEXT NOT NULL,
    kek_version INTEGER NOT NULL,
    wrapped     BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, subject_id),
    FOREIGN KEY (tenant_id, kek_version) REFERENCES tenant_keys (tenant_id, version)
);
CREATE INDEX subject_keys_by_kek ON subject_keys (tenant_id, kek_version);

CREATE TABLE subjects (
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    id               TEXT NOT NULL,
    status           TEXT NOT NULL,
    email_ct         BYTEA,
    email_bidx       BYTEA,
    phone_ct         BYTEA,
    phone_bidx       BYTEA,
    external_id_ct   BYTEA,
    external_id_bidx BYTEA,
    attributes_ct    BYTEA,
    source_ct        BYTEA,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX subjects_by_email ON subjects (tenant_id, email_bidx);
CREATE UNIQUE INDEX subjects_by_external_id ON subjects (tenant_id, external_id_bidx);
CREATE INDEX subjects_by_phone ON subjects (tenant_id, phone_bidx);

-- Accounts. A user is a data subject: email and name live, encrypted, in the
-- subject row, so that erasing the person reaches the account too.
CREATE TABLE users (
    tenant_id   TEXT NOT NULL,
    id          TEXT NOT NULL,
    subject_id  TEXT NOT NULL,
    role        TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, subject_id),
    FOREIGN KEY (tenant_id, subject_id) REFERENCES subjects (tenant_id, id)
);

-- API tokens: only a SHA-256 of the (256-bit random) secret is kept.
CREATE TABLE api_tokens (
    tenant_id    TEXT NOT NULL,
    id           TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    name         TEXT NOT NULL,
    hash         BYTEA NOT NULL UNIQUE,
    scopes       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL DEFAULT 0,
    revoked_at   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);

-- The audit chain: seq is dense per tenant; hash = SHA-256 over the canonical
-- encoding of the event including prev_hash. actor_ct holds the actor's
-- identity, IP and user agent, encrypted under the actor's subject key.
CREATE TABLE audit_events (
    tenant_id        TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    id               TEXT NOT NULL,
    at               BIGINT NOT NULL,
    actor_type       TEXT NOT NULL,
    actor_id         TEXT NOT NULL,
    actor_subject_id TEXT NOT NULL,
    actor_ct         BYTEA,
    action           TEXT NOT NULL,
    target_type      TEXT NOT NULL,
    target_id        TEXT NOT NULL,
    subject_id       TEXT NOT NULL,
    outcome          TEXT NOT NULL,
    request_id       TEXT NOT NULL,
    details          TEXT NOT NULL,
    prev_hash        BYTEA NOT NULL,
    hash             BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_events_by_at ON audit_events (tenant_id, at);
CREATE INDEX audit_events_by_subject ON audit_events (tenant_id, subject_id, seq);
CREATE INDEX audit_events_by_actor ON audit_events (tenant_id, actor_id, seq);
CREATE INDEX audit_events_by_action ON audit_events (tenant_id, action, seq);

CREATE TABLE audit_heads (
    tenant_id   TEXT PRIMARY KEY,
    seq         BIGINT NOT NULL,
    hash        BYTEA NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Signed checkpoints: ed25519 over (tenant, seq, hash, at) with the tenant's
-- audit signing key.
CREATE TABLE audit_checkpoints (
    tenant_id   TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    hash        BYTEA NOT NULL,
    at          BIGINT NOT NULL,
    signature   BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
