-- The head of every tenant's audit chain is signed at every commit batch
-- (ed25519, the tenant's audit key): signed_at is part of the signed
-- message. A head written before this migration has no signature until
-- its chain's next event.
ALTER TABLE audit_heads ADD COLUMN signed_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE audit_heads ADD COLUMN signature BYTEA NOT NULL DEFAULT '';
