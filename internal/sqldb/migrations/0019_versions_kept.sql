-- How many versions of each file a tenant keeps (the newest ones; 0: all).
-- Older versions are deleted — row, key and blob — when a new version
-- arrives and by the hourly job after the setting is lowered: storage
-- limitation (Art. 5(1)(e)) applies to old drafts of personal documents
-- too.
ALTER TABLE tenants ADD COLUMN versions_kept INTEGER NOT NULL DEFAULT 0;
