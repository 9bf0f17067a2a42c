-- This deployment's identity: made once, with the admin database, and written into the mark of
-- every database this system creates. Two deployments on one ODS server (two tenants' admin
-- databases, a test stack beside production) number their instances alike: the mark says whose.
-- It stays the same when the admin database is reached by another host name or moved.
CREATE TABLE edfi_im.deployment (
    id UUID NOT NULL PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    singleton BOOLEAN NOT NULL DEFAULT true UNIQUE CHECK (singleton)
);
INSERT INTO edfi_im.deployment (id) VALUES (gen_random_uuid());
