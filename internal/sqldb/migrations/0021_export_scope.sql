-- The access export of a person (GET /api/v1/subjects/{id}/export) has its
-- own scope, subjects:export. Tokens made before it, which exported with
-- subjects:read, keep that power.
UPDATE api_tokens SET scopes = scopes || ' subjects:export'
WHERE (' ' || scopes || ' ') LIKE '% subjects:read %' AND (' ' || scopes || ' ') NOT LIKE '% subjects:export %';
