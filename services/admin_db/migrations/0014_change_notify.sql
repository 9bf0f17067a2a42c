-- The change feed's NOTIFY carries the change it announces (its number, kind, row id and the
-- row's state, as JSON), so that a gateway following the feed hands it to its streams without
-- reading it back: one round trip fewer on the way of every change (issue 18). A change too
-- large for a NOTIFY payload (8000 bytes) is announced by its number alone, and read. The
-- numbering, the one change per row and transaction, and the table are as 0012_changes made
-- them; only what the NOTIFY says is new.
CREATE OR REPLACE FUNCTION edfi_im.record_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    state JSONB;
    number BIGINT;
    announced TEXT;
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
    number := nextval('edfi_im.changes_id_seq');
    INSERT INTO edfi_im.changes (id, kind, entity_id, txid, body, created_at)
    VALUES (
        number, TG_ARGV[0], NEW.id::text, txid_current(), state,
        clock_timestamp()  -- about the commit's time (now() is the transaction's start)
    );
    announced := jsonb_build_object(
        'id', number, 'kind', TG_ARGV[0], 'entity_id', NEW.id::text, 'body', state
    )::text;
    IF octet_length(announced) >= 8000 THEN
        announced := jsonb_build_object('id', number)::text;
    END IF;
    PERFORM pg_notify('edfi_im_changes', announced);
    RETURN NULL;
END
$$;
