-- The fence around a job's last server step: when it was done on the ODS server (the orphan
-- sweep then records the job's outcome as the fact it is instead of failing the job).
ALTER TABLE edfi_im.jobs ADD COLUMN server_done_at TIMESTAMPTZ NULL;
