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

CREATE FUNCTION cache_epochs_access() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE cache_epochs SET access = access + 1;
    RETURN NULL;
END;
$$;
CREATE FUNCTION cache_epochs_subjects() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE cache_epochs SET subjects = subjects + 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_tokens_epoch AFTER UPDATE OF tenant_id, id, user_id, hash, scopes, expires_at, revoked_at OR DELETE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION cache_epochs_access();
CREATE TRIGGER users_epoch AFTER INSERT OR UPDATE OF tenant_id, id, subject_id, role, status OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION cache_epochs_access();
CREATE TRIGGER tenants_epoch AFTER UPDATE OF id, status OR DELETE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION cache_epochs_access();

CREATE TRIGGER subjects_epoch AFTER UPDATE OF tenant_id, id, status, email_ct OR DELETE ON subjects
    FOR EACH STATEMENT EXECUTE FUNCTION cache_epochs_subjects();
CREATE TRIGGER subject_keys_epoch AFTER UPDATE OR DELETE ON subject_keys
    FOR EACH STATEMENT EXECUTE FUNCTION cache_epochs_subjects();
CREATE TRIGGER tenant_keys_epoch AFTER UPDATE OR DELETE ON tenant_keys
    FOR EACH STATEMENT EXECUTE FUNCTION cache_epochs_subjects();
