-- Erasure certificates: what is left of an erased person — that they were
-- erased, when, why, by whom and how many rows went — and nothing that
-- identifies them (the subject id is a random UUID). A subject id with a
-- certificate answers 410 Gone.
CREATE TABLE erasure_certificates (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    subject_id   TEXT NOT NULL,
    erased_at    BIGINT NOT NULL,
    reason       TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    actor        TEXT NOT NULL,
    counts       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, subject_id)
);
