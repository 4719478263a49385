-- Grants on folders as well as on whole spaces. node_id is '' for a grant
-- on the space, else the folder the grant is on; a user's access to an
-- item is the highest of the space's grants and the grants on every
-- folder above it (and on it, for a folder). Grants only add: there is no
-- deny below a grant. The table is made anew because the uniqueness now
-- includes the folder (neither engine can change a UNIQUE in place the
-- same way). Grants on folders are deleted with their folders.
CREATE TABLE space_grants_new (
    tenant_id    TEXT NOT NULL,
    id           TEXT NOT NULL,
    space_id     TEXT NOT NULL,
    node_id      TEXT NOT NULL DEFAULT '',
    grantee_type TEXT NOT NULL,
    grantee_id   TEXT NOT NULL,
    access       TEXT NOT NULL,
    granted_by   TEXT NOT NULL,
    granted_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, space_id, node_id, grantee_type, grantee_id),
    FOREIGN KEY (tenant_id, space_id) REFERENCES spaces (tenant_id, id)
);
INSERT INTO space_grants_new (tenant_id, id, space_id, node_id, grantee_type, grantee_id, access, granted_by, granted_at)
    SELECT tenant_id, id, space_id, '', grantee_type, grantee_id, access, granted_by, granted_at FROM space_grants;
DROP TABLE space_grants;
ALTER TABLE space_grants_new RENAME TO space_grants;
CREATE INDEX space_grants_grantee ON space_grants (tenant_id, grantee_type, grantee_id);
CREATE INDEX space_grants_node ON space_grants (tenant_id, node_id) WHERE node_id <> '';
