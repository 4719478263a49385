-- A one-time link may carry a value sealed under the person's key: the new
-- sign-in address a confirmation link sets, or the old one an undo link
-- puts back.
ALTER TABLE account_links ADD COLUMN payload BYTEA NOT NULL DEFAULT '';
