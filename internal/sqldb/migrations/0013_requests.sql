-- Data-subject requests (GDPR Art. 15–22). Deadlines are computed from
-- received_at in the tenant's time zone (tenants.time_zone, an IANA name).
-- Everything a request says about the person (notes, the extension
-- reason) is sealed under the subject's key: erasing the person leaves the
-- request's type, dates and statuses, which is the controller's record of
-- having handled it, and nothing readable about whom.
ALTER TABLE tenants ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';

CREATE TABLE data_requests (
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    id               TEXT NOT NULL,
    subject_id       TEXT NOT NULL,
    type             TEXT NOT NULL,
    channel          TEXT NOT NULL,
    status           TEXT NOT NULL,
    reason_code      TEXT NOT NULL DEFAULT '',
    assignee_id      TEXT NOT NULL DEFAULT '',
    received_at      BIGINT NOT NULL,
    due_at           BIGINT NOT NULL,
    extended_due_at  BIGINT NOT NULL DEFAULT 0,
    extension_ct     BYTEA,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX data_requests_by_due ON data_requests (tenant_id, status, due_at);
CREATE INDEX data_requests_by_subject ON data_requests (tenant_id, subject_id);

-- Each request's history: every transition and note, in order.
CREATE TABLE data_request_events (
    tenant_id    TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    subject_id   TEXT NOT NULL,
    kind         TEXT NOT NULL,
    from_status  TEXT NOT NULL,
    to_status    TEXT NOT NULL,
    actor_id     TEXT NOT NULL,
    note_ct      BYTEA,
    at           BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, request_id, seq)
);
