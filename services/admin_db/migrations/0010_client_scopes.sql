-- The scopes each API client may ask a token for (NULL: every scope, as for clients registered
-- before scopes were per client).
ALTER TABLE edfi_im.clients ADD COLUMN scopes JSONB NULL;
