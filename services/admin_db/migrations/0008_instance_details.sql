-- What the Ed-Fi Admin Console (and /v2) may ask for with a create, kept with the instance until
-- the status service writes it to dbo.odsinstances.instancetype, dbo.odsinstancecontexts and
-- dbo.odsinstancederivatives in the transaction that completes the instance.
-- contexts: [{"contextKey": "schoolYear", "contextValue": "2027"}, ...]
-- derivatives: [{"derivativeType": "ReadReplica"}, ...]
ALTER TABLE edfi_im.dbinstances ADD COLUMN instancetype VARCHAR(100) NULL;
ALTER TABLE edfi_im.dbinstances ADD COLUMN contexts JSONB NOT NULL DEFAULT '[]';
ALTER TABLE edfi_im.dbinstances ADD COLUMN derivatives JSONB NOT NULL DEFAULT '[]';
