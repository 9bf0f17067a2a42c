-- This system's schema on SQL Server: the state PostgreSQL's migrations 0002-0011 reach
-- (services/admin_db/migrations/), written in T-SQL. Run by services/admin_db/migrate_mssql.py,
-- batch by batch (GO), in one transaction. Covers: 0001_edfi_admin_dbo_subset (nothing: dbo is
-- Ed-Fi's), 0002_adminapi_schema, 0003_rename_delete, 0004_recovery, 0005_scheduler,
-- 0006_clients, 0007_name_conflict_indexes, 0008_instance_details, 0009_fence,
-- 0010_client_scopes, 0011_outbox_parking. Not here: 0012_changes and 0014_change_notify, the
-- change feed behind the event streams (PL/pgSQL triggers and NOTIFY): PostgreSQL only; on SQL
-- Server they answer 501.
--
-- Names that must be unique ignoring case (instance and schedule names, database names) use a
-- case-insensitive collation, whatever the database's: PostgreSQL indexes lower(name) instead.
-- JSON documents are nvarchar(max) holding JSON (ISJSON checked).

CREATE TABLE edfi_im.dbinstances (
    id INT IDENTITY(1, 1) NOT NULL CONSTRAINT dbinstances_pkey PRIMARY KEY,
    name NVARCHAR(100) COLLATE Latin1_General_100_CI_AS NOT NULL,
    odsinstanceid INT NULL,
    odsinstancename NVARCHAR(100) NULL,
    status NVARCHAR(75) NOT NULL,
    databasetemplate NVARCHAR(100) NOT NULL,
    databasename NVARCHAR(255) COLLATE Latin1_General_100_CI_AS NULL,
    lastrefreshed DATETIMEOFFSET NOT NULL CONSTRAINT dbinstances_lastrefreshed_df DEFAULT SYSDATETIMEOFFSET(),
    lastmodifieddate DATETIMEOFFSET NULL,
    currentjobid UNIQUEIDENTIFIER NULL,
    error NVARCHAR(MAX) NULL,
    createdat DATETIMEOFFSET NOT NULL CONSTRAINT dbinstances_createdat_df DEFAULT SYSDATETIMEOFFSET(),
    pendingname NVARCHAR(100) COLLATE Latin1_General_100_CI_AS NULL,
    pendingdatabasename NVARCHAR(255) COLLATE Latin1_General_100_CI_AS NULL,
    imported BIT NOT NULL CONSTRAINT dbinstances_imported_df DEFAULT 0,
    instancetype NVARCHAR(100) NULL,
    contexts NVARCHAR(MAX) NOT NULL CONSTRAINT dbinstances_contexts_df DEFAULT N'[]'
        CONSTRAINT dbinstances_contexts_json CHECK (ISJSON(contexts) = 1),
    derivatives NVARCHAR(MAX) NOT NULL CONSTRAINT dbinstances_derivatives_df DEFAULT N'[]'
        CONSTRAINT dbinstances_derivatives_json CHECK (ISJSON(derivatives) = 1)
);
GO
CREATE UNIQUE INDEX dbinstances_live_name_uq
    ON edfi_im.dbinstances (name) WHERE status <> N'Deleted';
CREATE UNIQUE INDEX dbinstances_live_databasename_uq
    ON edfi_im.dbinstances (databasename) WHERE status <> N'Deleted';
CREATE UNIQUE INDEX dbinstances_live_odsinstanceid_uq
    ON edfi_im.dbinstances (odsinstanceid) WHERE odsinstanceid IS NOT NULL AND status <> N'Deleted';
CREATE INDEX dbinstances_status_ix ON edfi_im.dbinstances (status);
CREATE INDEX dbinstances_odsinstanceid_ix ON edfi_im.dbinstances (odsinstanceid);
CREATE INDEX dbinstances_pendingname_ix ON edfi_im.dbinstances (pendingname);
CREATE INDEX dbinstances_pendingdatabasename_ix ON edfi_im.dbinstances (pendingdatabasename);
GO

CREATE TABLE edfi_im.jobs (
    id UNIQUEIDENTIFIER NOT NULL CONSTRAINT jobs_pkey PRIMARY KEY,
    type NVARCHAR(50) NOT NULL,
    instance_id INT NULL CONSTRAINT jobs_instance_id_fkey REFERENCES edfi_im.dbinstances (id),
    status NVARCHAR(20) NOT NULL,
    progress_message NVARCHAR(MAX) NULL,
    progress_percent INT NULL,
    attempts INT NOT NULL CONSTRAINT jobs_attempts_df DEFAULT 0,
    created_at DATETIMEOFFSET NOT NULL CONSTRAINT jobs_created_at_df DEFAULT SYSDATETIMEOFFSET(),
    started_at DATETIMEOFFSET NULL,
    finished_at DATETIMEOFFSET NULL,
    heartbeat_at DATETIMEOFFSET NULL,
    error NVARCHAR(MAX) NULL,
    worker NVARCHAR(200) NULL,
    correlation_id NVARCHAR(100) NULL,
    data NVARCHAR(MAX) NOT NULL CONSTRAINT jobs_data_df DEFAULT N'{}'
        CONSTRAINT jobs_data_json CHECK (ISJSON(data) = 1),
    command NVARCHAR(MAX) NULL CONSTRAINT jobs_command_json CHECK (ISJSON(command) = 1),
    recoveries INT NOT NULL CONSTRAINT jobs_recoveries_df DEFAULT 0,
    schedule_id UNIQUEIDENTIFIER NULL,
    result NVARCHAR(MAX) NULL CONSTRAINT jobs_result_json CHECK (ISJSON(result) = 1),
    claimed_at DATETIMEOFFSET NULL,
    server_done_at DATETIMEOFFSET NULL
);
GO
CREATE INDEX jobs_instance_ix ON edfi_im.jobs (instance_id, created_at);
CREATE INDEX jobs_status_ix ON edfi_im.jobs (status);
CREATE INDEX jobs_running_heartbeat_ix ON edfi_im.jobs (heartbeat_at) WHERE status = N'Running';
CREATE INDEX jobs_schedule_ix ON edfi_im.jobs (schedule_id) WHERE schedule_id IS NOT NULL;
CREATE INDEX jobs_type_ix ON edfi_im.jobs (type);
CREATE INDEX jobs_finished_ix ON edfi_im.jobs (finished_at) WHERE finished_at IS NOT NULL;
GO

CREATE TABLE edfi_im.outbox (
    id BIGINT IDENTITY(1, 1) NOT NULL CONSTRAINT outbox_pkey PRIMARY KEY,
    message_id UNIQUEIDENTIFIER NOT NULL CONSTRAINT outbox_message_id_key UNIQUE,
    exchange NVARCHAR(200) NOT NULL,
    routing_key NVARCHAR(200) NOT NULL,
    message_type NVARCHAR(200) NOT NULL,
    body NVARCHAR(MAX) NOT NULL CONSTRAINT outbox_body_json CHECK (ISJSON(body) = 1),
    correlation_id NVARCHAR(100) NULL,
    created_at DATETIMEOFFSET NOT NULL CONSTRAINT outbox_created_at_df DEFAULT SYSDATETIMEOFFSET(),
    sent_at DATETIMEOFFSET NULL,
    attempts INT NOT NULL CONSTRAINT outbox_attempts_df DEFAULT 0,
    last_error NVARCHAR(MAX) NULL,
    parked_at DATETIMEOFFSET NULL
);
GO
CREATE INDEX outbox_waiting_ix ON edfi_im.outbox (id) WHERE sent_at IS NULL AND parked_at IS NULL;
CREATE INDEX outbox_parked_ix ON edfi_im.outbox (id) WHERE parked_at IS NOT NULL;
CREATE INDEX outbox_sent_ix ON edfi_im.outbox (sent_at) WHERE sent_at IS NOT NULL;
GO

CREATE TABLE edfi_im.inbox (
    consumer NVARCHAR(100) NOT NULL,
    message_id NVARCHAR(200) NOT NULL,
    message_type NVARCHAR(200) NULL,
    processed_at DATETIMEOFFSET NOT NULL CONSTRAINT inbox_processed_at_df DEFAULT SYSDATETIMEOFFSET(),
    CONSTRAINT inbox_pkey PRIMARY KEY (consumer, message_id)
);
GO
CREATE INDEX inbox_processed_ix ON edfi_im.inbox (processed_at);
GO

CREATE TABLE edfi_im.schedules (
    id UNIQUEIDENTIFIER NOT NULL CONSTRAINT schedules_pkey PRIMARY KEY,
    name NVARCHAR(200) COLLATE Latin1_General_100_CI_AS NOT NULL,
    job_type NVARCHAR(50) NOT NULL,
    parameters NVARCHAR(MAX) NOT NULL CONSTRAINT schedules_parameters_json CHECK (ISJSON(parameters) = 1),
    [trigger] NVARCHAR(MAX) NOT NULL CONSTRAINT schedules_trigger_json CHECK (ISJSON([trigger]) = 1),
    misfire_policy NVARCHAR(20) NOT NULL,
    allow_concurrent BIT NOT NULL,
    state NVARCHAR(20) NOT NULL,
    next_fire_time DATETIMEOFFSET NULL,
    previous_fire_time DATETIMEOFFSET NULL,
    fire_count INT NOT NULL CONSTRAINT schedules_fire_count_df DEFAULT 0,
    last_job_id UNIQUEIDENTIFIER NULL,
    error NVARCHAR(MAX) NULL,
    created_at DATETIMEOFFSET NOT NULL CONSTRAINT schedules_created_at_df DEFAULT SYSDATETIMEOFFSET(),
    updated_at DATETIMEOFFSET NOT NULL CONSTRAINT schedules_updated_at_df DEFAULT SYSDATETIMEOFFSET(),
    paused_at DATETIMEOFFSET NULL
);
GO
CREATE UNIQUE INDEX schedules_name_uq ON edfi_im.schedules (name);
CREATE INDEX schedules_due_ix ON edfi_im.schedules (next_fire_time) WHERE state = N'Normal';
GO

CREATE TABLE edfi_im.schedule_runs (
    id BIGINT IDENTITY(1, 1) NOT NULL CONSTRAINT schedule_runs_pkey PRIMARY KEY,
    schedule_id UNIQUEIDENTIFIER NOT NULL CONSTRAINT schedule_runs_schedule_id_fkey
        REFERENCES edfi_im.schedules (id) ON DELETE CASCADE,
    scheduled_fire_time DATETIMEOFFSET NOT NULL,
    actual_fire_time DATETIMEOFFSET NOT NULL,
    job_id UNIQUEIDENTIFIER NULL,
    outcome NVARCHAR(20) NOT NULL,
    detail NVARCHAR(MAX) NULL,
    -- One run per occurrence: two scheduler replicas can never both fire it.
    CONSTRAINT schedule_runs_occurrence_uq UNIQUE (schedule_id, scheduled_fire_time)
);
GO
CREATE INDEX schedule_runs_actual_ix ON edfi_im.schedule_runs (actual_fire_time);
GO

CREATE TABLE edfi_im.clients (
    client_id NVARCHAR(100) COLLATE Latin1_General_100_CS_AS NOT NULL CONSTRAINT clients_pkey PRIMARY KEY,
    secret_hash NVARCHAR(MAX) NOT NULL,
    display_name NVARCHAR(200) NOT NULL,
    tenants NVARCHAR(MAX) NULL CONSTRAINT clients_tenants_json CHECK (ISJSON(tenants) = 1),
    created_at DATETIMEOFFSET NOT NULL CONSTRAINT clients_created_at_df DEFAULT SYSDATETIMEOFFSET(),
    scopes NVARCHAR(MAX) NULL CONSTRAINT clients_scopes_json CHECK (ISJSON(scopes) = 1)
);
