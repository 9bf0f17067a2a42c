-- API clients of the gateway (OAuth2 client credentials, as Ed-Fi Admin API 2 has them). The
-- secret is stored as an argon2id hash, never in clear. `tenants` limits a client to those
-- tenants (NULL: every tenant).
CREATE TABLE edfi_im.clients (
    client_id VARCHAR(100) PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    display_name VARCHAR(200) NOT NULL,
    tenants JSONB NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
