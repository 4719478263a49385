-- The audit trail filtered by a person (the console's "person" filter,
-- the API's ?actor= with a person's id) finds their events by index, not by
-- reading the whole trail.
CREATE INDEX audit_events_by_actor_subject ON audit_events (tenant_id, actor_subject_id, seq);
