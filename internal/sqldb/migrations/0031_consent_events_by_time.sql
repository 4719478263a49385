-- The tenant's consent history by time (the console's consent page and its
-- CSV, GET /api/v1/consent/events): newest first without reading the whole
-- ledger.
CREATE INDEX consent_events_by_time ON consent_events (tenant_id, created_at, id);
