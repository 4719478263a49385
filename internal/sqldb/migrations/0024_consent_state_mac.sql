-- Each consent state row is bound by a MAC (tenant key) to the ledger
-- event it names, so that someone who writes the database cannot flip a
-- withdrawal to a grant unnoticed. Rows written before this migration have
-- none: they are checked against the ledger event itself when read.
ALTER TABLE consent_state ADD COLUMN mac BYTEA NOT NULL DEFAULT '';
