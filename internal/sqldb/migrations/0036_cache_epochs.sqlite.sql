-- What the in-memory caches copy (a token's principal, a person's email
-- and data key) is valid while these counters stand still. Triggers move
-- them in the transaction of the change — whatever made it: a request, the
-- CLI, a restore's replay, a hand-made UPDATE — and every node reads them
-- at the start of each request (package sqldb, Epochs).
--   access:   api_tokens, users, tenants (who a token is, what it may do;
--             who has an account)
--   subjects: subjects' status and email, subject_keys, tenant_keys
-- A backup does not bring them back: each database keeps its own.
CREATE TABLE cache_epochs (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    access   BIGINT NOT NULL,
    subjects BIGINT NOT NULL
);
INSERT INTO cache_epochs (id, access, subjects) VALUES (1, 0, 0);

CREATE TRIGGER api_tokens_epoch_update AFTER UPDATE OF tenant_id, id, user_id, hash, scopes, expires_at, revoked_at ON api_tokens
BEGIN UPDATE cache_epochs SET access = access + 1; END;
CREATE TRIGGER api_tokens_epoch_delete AFTER DELETE ON api_tokens
BEGIN UPDATE cache_epochs SET access = access + 1; END;
CREATE TRIGGER users_epoch_update AFTER UPDATE OF tenant_id, id, subject_id, role, status ON users
BEGIN UPDATE cache_epochs SET access = access + 1; END;
CREATE TRIGGER users_epoch_insert AFTER INSERT ON users
BEGIN UPDATE cache_epochs SET access = access + 1; END;
CREATE TRIGGER users_epoch_delete AFTER DELETE ON users
BEGIN UPDATE cache_epochs SET access = access + 1; END;
CREATE TRIGGER tenants_epoch_update AFTER UPDATE OF id, status ON tenants
BEGIN UPDATE cache_epochs SET access = access + 1; END;
CREATE TRIGGER tenants_epoch_delete AFTER DELETE ON tenants
BEGIN UPDATE cache_epochs SET access = access + 1; END;

CREATE TRIGGER subjects_epoch_update AFTER UPDATE OF tenant_id, id, status, email_ct ON subjects
BEGIN UPDATE cache_epochs SET subjects = subjects + 1; END;
CREATE TRIGGER subjects_epoch_delete AFTER DELETE ON subjects
BEGIN UPDATE cache_epochs SET subjects = subjects + 1; END;
CREATE TRIGGER subject_keys_epoch_update AFTER UPDATE ON subject_keys
BEGIN UPDATE cache_epochs SET subjects = subjects + 1; END;
CREATE TRIGGER subject_keys_epoch_delete AFTER DELETE ON subject_keys
BEGIN UPDATE cache_epochs SET subjects = subjects + 1; END;
CREATE TRIGGER tenant_keys_epoch_update AFTER UPDATE ON tenant_keys
BEGIN UPDATE cache_epochs SET subjects = subjects + 1; END;
CREATE TRIGGER tenant_keys_epoch_delete AFTER DELETE ON tenant_keys
BEGIN UPDATE cache_epochs SET subjects = subjects + 1; END;
