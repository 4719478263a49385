-- Passkeys (WebAuthn) as a second factor. A passkey is an mfa_factors row
-- of kind 'passkey': secret_ct holds the sealed credential record (public
-- key, credential id, flags), last_step the authenticator's signature
-- counter, label_ct the name the user gave it, sealed like every per-user
-- secret under the subject's key.
ALTER TABLE mfa_factors ADD COLUMN label_ct BYTEA;

-- The server's half of a WebAuthn ceremony in flight: the challenge and
-- what it was issued for, sealed, bound to the session that asked for it.
-- A newer ceremony of the same purpose replaces an older one; finishing
-- deletes it (DELETE … RETURNING), so a challenge is answered at most once.
CREATE TABLE passkey_challenges (
    tenant_id   TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    data_ct     BYTEA NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, session_id, purpose)
);
CREATE INDEX passkey_challenges_expiry ON passkey_challenges (expires_at);
