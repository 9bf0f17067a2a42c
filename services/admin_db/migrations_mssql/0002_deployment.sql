-- 0013_deployment: this deployment's identity, written into the mark of every database it
-- creates (services/admin_db/migrations/0013_deployment.sql says why).
CREATE TABLE edfi_im.deployment (
    id UNIQUEIDENTIFIER NOT NULL CONSTRAINT deployment_pkey PRIMARY KEY,
    created_at DATETIMEOFFSET NOT NULL CONSTRAINT deployment_created_at_df DEFAULT SYSDATETIMEOFFSET(),
    singleton BIT NOT NULL CONSTRAINT deployment_singleton_df DEFAULT 1,
    CONSTRAINT deployment_singleton_key UNIQUE (singleton),
    CONSTRAINT deployment_singleton_ck CHECK (singleton = 1)
);
GO
INSERT INTO edfi_im.deployment (id) VALUES (NEWID());
GO
