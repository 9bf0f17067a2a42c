-- Rename and delete: the name a rename in flight has reserved, and at most one live instance
-- row per dbo.odsinstances row (start-up sync imports rows made by other Ed-Fi tools).
ALTER TABLE edfi_im.dbinstances
    ADD COLUMN pendingname VARCHAR(100) NULL,
    ADD COLUMN pendingdatabasename VARCHAR(255) NULL,
    ADD COLUMN imported BOOLEAN NOT NULL DEFAULT false;

CREATE UNIQUE INDEX dbinstances_live_odsinstanceid_uq
    ON edfi_im.dbinstances (odsinstanceid)
    WHERE odsinstanceid IS NOT NULL AND status <> 'Deleted';
