-- The name-conflict check of a create or rename looks at names, database names and the pending
-- ones of renames in flight, under one lock shared by all creates. Without indexes on the
-- pending columns it scanned every instance (about 9 ms at 10,000 rows, and every create waits
-- for the one before it); with them it is a bitmap OR of four index lookups.
CREATE INDEX dbinstances_pendingname_ix ON edfi_im.dbinstances (lower(pendingname));
CREATE INDEX dbinstances_pendingdatabasename_ix
    ON edfi_im.dbinstances (lower(pendingdatabasename));
