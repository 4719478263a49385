-- Resumable uploads: a session holds the parts received so far, each a
-- blob of its own in the space's region, sealed (segcrypt) under the
-- session's key, which is kept here sealed under the tenant's data key;
-- the path is sealed too (names may name people). When the last byte
-- arrives the parts are read in order into an ordinary upload and the
-- session goes; an idle session expires (expires_at) and its parts are
-- deleted; a move of the space to another region cancels its sessions.
-- completing is when a request began making the file (0: none), so that
-- a retry meanwhile does not make it twice.
CREATE TABLE upload_sessions (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    id           TEXT NOT NULL,
    space_id     TEXT NOT NULL,
    path_ct      BYTEA NOT NULL,
    content_type TEXT NOT NULL,
    if_match     TEXT NOT NULL,
    size         BIGINT NOT NULL,
    received     BIGINT NOT NULL DEFAULT 0,
    parts        INTEGER NOT NULL DEFAULT 0,
    completing   BIGINT NOT NULL DEFAULT 0,
    key_ct       BYTEA NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, space_id) REFERENCES spaces (tenant_id, id)
);
CREATE INDEX upload_sessions_by_user ON upload_sessions (tenant_id, created_by);
CREATE INDEX upload_sessions_expiry ON upload_sessions (expires_at);

CREATE TABLE upload_parts (
    tenant_id   TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    part        INTEGER NOT NULL,
    region      TEXT NOT NULL,
    blob_key    TEXT NOT NULL,
    size        BIGINT NOT NULL,
    sealed_size BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, session_id, part),
    FOREIGN KEY (tenant_id, session_id) REFERENCES upload_sessions (tenant_id, id)
);
