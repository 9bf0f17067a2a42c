-- Recovery: the command of each job (to re-drive it through the outbox when its worker died or
-- after a dead-lettered command is requeued) and how many times it was recovered.
ALTER TABLE edfi_im.jobs
    ADD COLUMN command JSONB NULL,
    ADD COLUMN recoveries INT NOT NULL DEFAULT 0;
CREATE INDEX jobs_running_heartbeat_ix ON edfi_im.jobs (heartbeat_at) WHERE status = 'Running';
