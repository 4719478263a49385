-- Identity: passwords, lockout counters, known devices, sessions, second
-- factors, recovery codes, and per-tenant settings.
--
-- failed_logins/locked_until exist on users (the account's budget, spent by
-- unknown clients) and on devices (each known device's own budget), and are
-- only ever changed by single conditional UPDATEs, so counting is exact
-- under concurrency.

ALTER TABLE users ADD COLUMN password_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN password_changed_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN last_login_at BIGINT NOT NULL DEFAULT 0;

-- Settings per tenant, one JSON document per section ("security", …);
-- a missing row means the defaults.
CREATE TABLE tenant_settings (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    section     TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, section)
);

-- Browsers that signed in to an account successfully. The cookie holds a
-- 256-bit secret; only its SHA-256 is kept.
CREATE TABLE devices (
    tenant_id     TEXT NOT NULL,
    id            TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    hash          BYTEA NOT NULL,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until  BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, user_id, hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);

-- Sessions: the cookie holds a 256-bit secret; only its SHA-256 is kept, and
-- it is replaced at every step-up. state is 'mfa' (password checked, second
-- factor pending), 'enrol' (must set up a second factor first) or 'full'.
-- client_ct (IP and user agent) is sealed under the user's subject key.
CREATE TABLE sessions (
    tenant_id   TEXT NOT NULL,
    id          TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    hash        BYTEA NOT NULL UNIQUE,
    state       TEXT NOT NULL,
    client_ct   BYTEA,
    created_at  BIGINT NOT NULL,
    seen_at     BIGINT NOT NULL,
    authed_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX sessions_by_user ON sessions (tenant_id, user_id);

-- Second factors. secret_ct (TOTP secret, phone number, passkey credential)
-- is sealed under the user's subject key. last_step is the last accepted
-- TOTP time step: a code is accepted only for a later step (no replay).
CREATE TABLE mfa_factors (
    tenant_id    TEXT NOT NULL,
    id           TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    secret_ct    BYTEA NOT NULL,
    last_step    BIGINT NOT NULL DEFAULT 0,
    confirmed_at BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX mfa_factors_by_user ON mfa_factors (tenant_id, user_id);

-- Single-use recovery codes, kept as HMAC-SHA-256 under a tenant key.
CREATE TABLE recovery_codes (
    tenant_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    hash        BYTEA NOT NULL,
    used_at     BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
