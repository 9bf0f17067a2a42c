-- This system's own schema, edfi_im: instances (the seed's DbInstances plus name), jobs, outbox,
-- inbox. Never adminapi (Ed-Fi's Admin API owns it and has an adminapi.dbinstances of its own)
-- nor dbo (Ed-Fi's). Installations made before the schema was renamed had these tables in
-- adminapi; `edfi-im migrate` moves them to edfi_im before it applies anything
-- (services/runtime/migrate.py), keeping every row.
CREATE SCHEMA IF NOT EXISTS edfi_im;

CREATE TABLE edfi_im.dbinstances (
    id SERIAL PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    odsinstanceid INT NULL,
    odsinstancename VARCHAR(100) NULL,
    status VARCHAR(75) NOT NULL,
    databasetemplate VARCHAR(100) NOT NULL,
    databasename VARCHAR(255) NULL,
    lastrefreshed TIMESTAMPTZ NOT NULL DEFAULT now(),
    lastmodifieddate TIMESTAMPTZ NULL,
    currentjobid UUID NULL,
    error TEXT NULL,
    createdat TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Names and database names are unique among live instances, case-insensitively
-- ("Grand Bend" and "grand_bend" would map to the same database).
CREATE UNIQUE INDEX dbinstances_live_name_uq
    ON edfi_im.dbinstances (lower(name)) WHERE status <> 'Deleted';
CREATE UNIQUE INDEX dbinstances_live_databasename_uq
    ON edfi_im.dbinstances (lower(databasename)) WHERE status <> 'Deleted';
CREATE INDEX dbinstances_status_ix ON edfi_im.dbinstances (status);
CREATE INDEX dbinstances_odsinstanceid_ix ON edfi_im.dbinstances (odsinstanceid);

CREATE TABLE edfi_im.jobs (
    id UUID PRIMARY KEY,
    type VARCHAR(50) NOT NULL,
    instance_id INT NULL REFERENCES edfi_im.dbinstances (id),
    status VARCHAR(20) NOT NULL,
    progress_message TEXT NULL,
    progress_percent INT NULL,
    attempts INT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at TIMESTAMPTZ NULL,
    finished_at TIMESTAMPTZ NULL,
    heartbeat_at TIMESTAMPTZ NULL,
    error TEXT NULL,
    worker VARCHAR(200) NULL,
    correlation_id VARCHAR(100) NULL,
    data JSONB NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX jobs_instance_ix ON edfi_im.jobs (instance_id, created_at);
CREATE INDEX jobs_status_ix ON edfi_im.jobs (status);

CREATE TABLE edfi_im.outbox (
    id BIGSERIAL PRIMARY KEY,
    message_id UUID NOT NULL UNIQUE,
    exchange VARCHAR(200) NOT NULL,
    routing_key VARCHAR(200) NOT NULL,
    message_type VARCHAR(200) NOT NULL,
    body JSONB NOT NULL,
    correlation_id VARCHAR(100) NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at TIMESTAMPTZ NULL,
    attempts INT NOT NULL DEFAULT 0,
    last_error TEXT NULL
);
CREATE INDEX outbox_unsent_ix ON edfi_im.outbox (id) WHERE sent_at IS NULL;

CREATE TABLE edfi_im.inbox (
    consumer VARCHAR(100) NOT NULL,
    message_id VARCHAR(200) NOT NULL,
    message_type VARCHAR(200) NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
