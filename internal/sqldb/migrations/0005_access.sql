-- Groups, spaces and who may see or change what.
--
-- Names of groups and spaces may name people ("Client: Jane Doe"), so they
-- are sealed under the tenant's data key; name_idx is a blind index of the
-- normalised group name that keeps names unique per tenant.
--
-- A grant gives a user or a group viewer or editor on a space; a user's
-- access is the highest of their own grant and their groups' grants, and
-- none without one (tenant owners and admins administer every space).
CREATE TABLE user_groups (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    id          TEXT NOT NULL,
    name_ct     BYTEA NOT NULL,
    name_idx    BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name_idx)
);

CREATE TABLE group_members (
    tenant_id   TEXT NOT NULL,
    group_id    TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    is_admin    INTEGER NOT NULL DEFAULT 0,
    added_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, group_id, user_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES user_groups (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX group_members_user ON group_members (tenant_id, user_id);

CREATE TABLE spaces (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    id          TEXT NOT NULL,
    name_ct     BYTEA NOT NULL,
    region      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE space_grants (
    tenant_id    TEXT NOT NULL,
    id           TEXT NOT NULL,
    space_id     TEXT NOT NULL,
    grantee_type TEXT NOT NULL,
    grantee_id   TEXT NOT NULL,
    access       TEXT NOT NULL,
    granted_by   TEXT NOT NULL,
    granted_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, space_id, grantee_type, grantee_id),
    FOREIGN KEY (tenant_id, space_id) REFERENCES spaces (tenant_id, id)
);
CREATE INDEX space_grants_grantee ON space_grants (tenant_id, grantee_type, grantee_id);
