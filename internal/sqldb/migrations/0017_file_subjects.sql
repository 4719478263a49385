-- Files and folders linked to the data subjects they are about (a
-- client's contract, a patient's letters). An access export hands the
-- person every version of every file linked to them (and of every file
-- inside a linked folder); an erasure of the person deletes those items
-- or only the links, as the tenant says in linked_files_on_erasure
-- ('delete' | 'keep').
CREATE TABLE file_subjects (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    node_id    TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    linked_by  TEXT NOT NULL,
    linked_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, node_id, subject_id),
    FOREIGN KEY (tenant_id, node_id) REFERENCES nodes (tenant_id, id)
);
CREATE INDEX file_subjects_by_subject ON file_subjects (tenant_id, subject_id);

ALTER TABLE tenants ADD COLUMN linked_files_on_erasure TEXT NOT NULL DEFAULT 'delete';
