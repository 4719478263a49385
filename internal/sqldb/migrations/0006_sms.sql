-- One-time codes sent by SMS. Only a keyed MAC of the code is kept; a code
-- lives 5 minutes, allows 5 tries and is used at most once (conditional
-- UPDATEs). The phone number itself is sealed in the factor's secret_ct.
CREATE TABLE sms_codes (
    tenant_id   TEXT NOT NULL,
    id          TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    factor_id   TEXT NOT NULL,
    code_mac    BYTEA NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX sms_codes_factor ON sms_codes (tenant_id, factor_id, created_at);
CREATE INDEX sms_codes_user ON sms_codes (tenant_id, user_id, created_at);
