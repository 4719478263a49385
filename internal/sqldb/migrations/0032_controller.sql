-- The controller's identity and contact details (GDPR Art. 13(1)(a)(b),
-- 14, 15, 37(7)): legal name, address, contact, the data protection
-- officer, the EU representative, the privacy policy. They can name people
-- (the DPO), so they are sealed under the tenant's data key, as JSON.
ALTER TABLE tenants ADD COLUMN controller_ct BYTEA;
