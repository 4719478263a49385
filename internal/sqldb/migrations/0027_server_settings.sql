-- Facts a server records for the commands run beside it: the public URL
-- it answers under (links printed by `custodia tenant create`).
CREATE TABLE server_settings (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
