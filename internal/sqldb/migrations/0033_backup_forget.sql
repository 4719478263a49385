-- The people whose data keys kept backups must forget: written in the
-- erasure's (or anonymisation's) own transaction, so that the work cannot
-- be lost; a row goes once every kept backup's key shard is rewritten
-- without the person (package backup).
CREATE TABLE backup_forget (
    tenant_id  TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    queued_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, subject_id)
);
