-- When an erasure reached the kept backups (their key shards rewritten
-- without the person), and how many held the key: the certificate says so.
ALTER TABLE erasure_certificates ADD COLUMN backups_reached_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE erasure_certificates ADD COLUMN backups_held INTEGER NOT NULL DEFAULT 0;
