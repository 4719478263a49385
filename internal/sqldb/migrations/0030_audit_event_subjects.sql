-- The people an audit event concerns beyond its subject_id: the contacts a
-- list page showed, recorded as one event whose chained details name them
-- ("subjects"). This index lets a person's events (their access export's
-- "who read my data") find those events too; Verify checks it against the
-- chained details, so a removed row is detected.
CREATE TABLE audit_event_subjects (
    tenant_id  TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    subject_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq, subject_id)
);
CREATE INDEX audit_event_subjects_by_subject ON audit_event_subjects (tenant_id, subject_id, seq);
