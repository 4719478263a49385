-- Files and folders in spaces, their versions, the trash, and the blobs
-- being written.

-- Where a tenant may keep files: its default region is tenants.region;
-- allowed_regions narrows the operator's regions (JSON list; empty: all).
-- Trashed items are purged after trash_days; quota_bytes bounds the bytes
-- of every stored version (0: no bound).
ALTER TABLE tenants ADD COLUMN allowed_regions TEXT NOT NULL DEFAULT '[]';
ALTER TABLE tenants ADD COLUMN trash_days INTEGER NOT NULL DEFAULT 30;
ALTER TABLE tenants ADD COLUMN quota_bytes BIGINT NOT NULL DEFAULT 0;

-- A space in the trash (trashed_at > 0), and a space moving to another
-- region (migrating_to).
ALTER TABLE spaces ADD COLUMN trashed_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE spaces ADD COLUMN trashed_by TEXT NOT NULL DEFAULT '';
ALTER TABLE spaces ADD COLUMN migrating_to TEXT NOT NULL DEFAULT '';

-- Folders and files. parent_id is '' at the top of the space. Names may
-- name people, so they are sealed under the tenant's data key; name_idx
-- is a keyed MAC of the parent and the normalised name that keeps names
-- unique among the live items of a folder. An item in the trash has
-- trashed_at > 0; what is inside a trashed folder keeps trashed_at = 0
-- and goes and comes back with it.
CREATE TABLE nodes (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    id          TEXT NOT NULL,
    space_id    TEXT NOT NULL,
    parent_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    name_ct     BYTEA NOT NULL,
    name_idx    BYTEA NOT NULL,
    version     INTEGER NOT NULL DEFAULT 0,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    trashed_at  BIGINT NOT NULL DEFAULT 0,
    trashed_by  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, space_id) REFERENCES spaces (tenant_id, id)
);
CREATE UNIQUE INDEX nodes_live_names ON nodes (tenant_id, space_id, parent_id, name_idx) WHERE trashed_at = 0;
CREATE INDEX nodes_by_parent ON nodes (tenant_id, space_id, parent_id);
CREATE INDEX nodes_in_trash ON nodes (tenant_id, trashed_at) WHERE trashed_at > 0;

-- Every stored version of a file. The content is in region under
-- blob_key, sealed (segcrypt) under a key of its own, which is kept here
-- sealed under the tenant's data key: deleting the row shreds the content
-- wherever a copy of the blob remains. The content's SHA-256 is sealed
-- too (it would confirm a guess of what a file says).
CREATE TABLE file_versions (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    id           TEXT NOT NULL,
    node_id      TEXT NOT NULL,
    space_id     TEXT NOT NULL,
    version      INTEGER NOT NULL,
    region       TEXT NOT NULL,
    blob_key     TEXT NOT NULL,
    size         BIGINT NOT NULL,
    sealed_size  BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    key_ct       BYTEA NOT NULL,
    sha256_ct    BYTEA NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, node_id, version),
    FOREIGN KEY (tenant_id, node_id) REFERENCES nodes (tenant_id, id)
);
CREATE INDEX file_versions_by_space ON file_versions (tenant_id, space_id);

-- Blobs being written, and blobs whose rows are gone but whose deletion
-- has not been confirmed. A row is made before the first byte is written
-- and removed once the blob is either referenced by a version or deleted;
-- touched_at moves while a write is alive. The sweeper deletes the blobs
-- of rows left behind by a crash or a failed delete, so no blob outlives
-- its purpose.
CREATE TABLE blob_intents (
    region      TEXT NOT NULL,
    blob_key    TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    state       TEXT NOT NULL,
    touched_at  BIGINT NOT NULL,
    PRIMARY KEY (region, blob_key)
);
CREATE INDEX blob_intents_by_age ON blob_intents (touched_at);

