-- A row the broker refuses (unroutable, no such exchange) is parked instead of blocking the rows
-- behind it; `edfi-im outbox list` shows it, `edfi-im outbox requeue` puts it back in line.
ALTER TABLE edfi_im.outbox ADD COLUMN parked_at TIMESTAMPTZ NULL;
DROP INDEX edfi_im.outbox_unsent_ix;
CREATE INDEX outbox_waiting_ix ON edfi_im.outbox (id) WHERE sent_at IS NULL AND parked_at IS NULL;
CREATE INDEX outbox_parked_ix ON edfi_im.outbox (id) WHERE parked_at IS NOT NULL;
