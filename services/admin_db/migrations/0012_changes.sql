-- The change feed behind `GET /v2/events`: every committed change of a job or an instance is a
-- row here, with the row's state at commit, numbered in commit order; a NOTIFY wakes the
-- gateways' listeners. Triggers write it, so every service's writes are seen, whoever makes them.
--
-- Numbered in commit order: the number is drawn by a deferred (commit-time) trigger under a
-- transaction-level advisory lock, which is taken after every other lock of the transaction and
-- held only until its commit. So a reader that has seen change n has seen every committed change
-- below n, and a stream resumed with `Last-Event-ID: n` misses nothing (a rolled-back
-- transaction leaves a gap that never fills, which is harmless).
CREATE SEQUENCE edfi_im.changes_id_seq AS BIGINT;

CREATE TABLE edfi_im.changes (
    id BIGINT PRIMARY KEY,
    kind VARCHAR(20) NOT NULL,
    entity_id VARCHAR(64) NOT NULL,
    txid BIGINT NOT NULL,
    body JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX changes_entity_ix ON edfi_im.changes (entity_id, id);
CREATE INDEX changes_txid_ix ON edfi_im.changes (txid);
CREATE INDEX changes_created_ix ON edfi_im.changes (created_at);

CREATE FUNCTION edfi_im.record_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    state JSONB;
BEGIN
    -- An update of internal columns only (a claim, a fence's mark) is no change to show.
    IF TG_OP = 'UPDATE' AND TG_ARGV[0] = 'job' AND (to_jsonb(OLD) - 'command' - 'claimed_at'
        - 'server_done_at') = (to_jsonb(NEW) - 'command' - 'claimed_at' - 'server_done_at')
    THEN
        RETURN NULL;
    END IF;
    -- One change per row and transaction, with the row as it is at commit.
    IF EXISTS (
        SELECT 1 FROM edfi_im.changes c
        WHERE c.txid = txid_current() AND c.kind = TG_ARGV[0] AND c.entity_id = NEW.id::text
    ) THEN
        RETURN NULL;
    END IF;
    IF TG_ARGV[0] = 'job' THEN
        -- The job's command and bookkeeping stay internal (the API shows its parameters).
        SELECT to_jsonb(j) - 'command' - 'claimed_at' - 'server_done_at' INTO state
        FROM edfi_im.jobs j WHERE j.id = NEW.id;
    ELSE
        SELECT to_jsonb(i) INTO state FROM edfi_im.dbinstances i WHERE i.id = NEW.id;
    END IF;
    IF state IS NULL THEN
        RETURN NULL;  -- deleted again within the transaction
    END IF;
    -- pg advisory lock key "edfi-im changes" (0x0ED1F1C4A9): commit order of the numbers.
    PERFORM pg_advisory_xact_lock(63651824809);
    INSERT INTO edfi_im.changes (id, kind, entity_id, txid, body, created_at)
    VALUES (
        nextval('edfi_im.changes_id_seq'), TG_ARGV[0], NEW.id::text, txid_current(), state,
        clock_timestamp()  -- about the commit's time (now() is the transaction's start)
    );
    PERFORM pg_notify('edfi_im_changes', '');
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER jobs_changed
    AFTER INSERT OR UPDATE ON edfi_im.jobs
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION edfi_im.record_change('job');

CREATE CONSTRAINT TRIGGER dbinstances_changed
    AFTER INSERT OR UPDATE ON edfi_im.dbinstances
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION edfi_im.record_change('instance');
