-- The portal's cap on unconfirmed requests per address counts the
-- mailbox — the address without a "+tag" — so that plus-address variants
-- of one inbox share it. Rows written before this migration have none
-- and expire within a day.
ALTER TABLE portal_intakes ADD COLUMN mailbox_bidx BYTEA NOT NULL DEFAULT '';
CREATE INDEX portal_intakes_by_mailbox ON portal_intakes (tenant_id, mailbox_bidx);
