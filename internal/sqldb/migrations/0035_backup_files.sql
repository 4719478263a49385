-- Blob deletions wait while a backup copies the file content its snapshot
-- refers to: a row per backup under way, removed when it ends (until_at
-- lets a hold left by a crash lapse).
CREATE TABLE blob_holds (
    id       TEXT PRIMARY KEY,
    until_at BIGINT NOT NULL
);

-- File content an erasure shredded: kept backups delete their copies of
-- it (package backup), as they forget the person's key. Written in the
-- erasure's own transaction; a row goes once every copy is gone.
CREATE TABLE backup_forget_blobs (
    tenant_id TEXT NOT NULL,
    region    TEXT NOT NULL,
    blob_key  TEXT NOT NULL,
    queued_at BIGINT NOT NULL,
    PRIMARY KEY (region, blob_key)
);
