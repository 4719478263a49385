-- The background jobs' schedule, shared by every node: a periodic job
-- runs on the node that claims its row when it is due (next_run_at) and
-- no live lease holds it; the owner renews the lease while it runs, and a
-- node that dies lets the lease run out for another to take over.
CREATE TABLE jobs (
    name             TEXT PRIMARY KEY,
    next_run_at      BIGINT NOT NULL DEFAULT 0,
    owner            TEXT NOT NULL DEFAULT '',
    lease_until      BIGINT NOT NULL DEFAULT 0,
    started_at       BIGINT NOT NULL DEFAULT 0,
    last_success_at  BIGINT NOT NULL DEFAULT 0,
    last_duration_us BIGINT NOT NULL DEFAULT 0,
    failures         INTEGER NOT NULL DEFAULT 0
);
