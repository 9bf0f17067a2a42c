-- Scheduling (seeds 003 and 004): schedules with their triggers, the history of their fires, and
-- what jobs gain: the schedule that fired them, a result (maintenance jobs' reports) and the
-- moment a worker claimed them (after which a job can no longer be cancelled).
CREATE TABLE edfi_im.schedules (
    id UUID PRIMARY KEY,
    name VARCHAR(200) NOT NULL,
    job_type VARCHAR(50) NOT NULL,
    parameters JSONB NOT NULL,
    trigger JSONB NOT NULL,
    misfire_policy VARCHAR(20) NOT NULL,
    allow_concurrent BOOLEAN NOT NULL,
    state VARCHAR(20) NOT NULL,
    next_fire_time TIMESTAMPTZ NULL,
    previous_fire_time TIMESTAMPTZ NULL,
    fire_count INT NOT NULL DEFAULT 0,
    last_job_id UUID NULL,
    error TEXT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    paused_at TIMESTAMPTZ NULL
);
CREATE UNIQUE INDEX schedules_name_uq ON edfi_im.schedules (lower(name));
-- What the scheduler polls: the due schedules, earliest first.
CREATE INDEX schedules_due_ix ON edfi_im.schedules (next_fire_time) WHERE state = 'Normal';

CREATE TABLE edfi_im.schedule_runs (
    id BIGSERIAL PRIMARY KEY,
    schedule_id UUID NOT NULL REFERENCES edfi_im.schedules (id) ON DELETE CASCADE,
    scheduled_fire_time TIMESTAMPTZ NOT NULL,
    actual_fire_time TIMESTAMPTZ NOT NULL,
    job_id UUID NULL,
    outcome VARCHAR(20) NOT NULL,
    detail TEXT NULL,
    -- One run per occurrence: two scheduler replicas can never both fire it.
    CONSTRAINT schedule_runs_occurrence_uq UNIQUE (schedule_id, scheduled_fire_time)
);
CREATE INDEX schedule_runs_actual_ix ON edfi_im.schedule_runs (actual_fire_time);

ALTER TABLE edfi_im.jobs
    ADD COLUMN schedule_id UUID NULL,
    ADD COLUMN result JSONB NULL,
    ADD COLUMN claimed_at TIMESTAMPTZ NULL;
CREATE INDEX jobs_schedule_ix ON edfi_im.jobs (schedule_id) WHERE schedule_id IS NOT NULL;
CREATE INDEX jobs_type_ix ON edfi_im.jobs (type);
CREATE INDEX jobs_finished_ix ON edfi_im.jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX outbox_sent_ix ON edfi_im.outbox (sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX inbox_processed_ix ON edfi_im.inbox (processed_at);
