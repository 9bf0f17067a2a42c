-- A development and test copy of the part of Ed-Fi's EdFi_Admin `dbo` schema this system works
-- with, for PostgreSQL: the tables it reads and writes (odsinstances, odsinstancecontexts,
-- odsinstancederivatives, apiclients, apiclientodsinstances), every table their foreign keys
-- reach (applications, users, vendors, ownershiptokens), and every table that references an API
-- client or an ODS instance (clientaccesstokens, apiclientownershiptokens,
-- apiclientapplicationeducationorganizations, and applicationeducationorganizations which that
-- last one needs).
--
-- Written for this project from the final state of an EdFi_Admin built with Ed-Fi-ODS v7.3.2
-- (tag v7.3.2, e489317e), Artifacts/PgSql/Structure/Admin, all 37 scripts applied in order:
-- the same table, column, constraint and index names, types, nullability, defaults, keys,
-- unique indexes and foreign-key delete actions (no cascades where Ed-Fi has none).
-- tests/fixtures/edfi_admin_dbo_v7.3.2.json pins that description, and
-- tests/integration/test_edfi_admin_schema.py fails if this copy drifts from it.
--
-- Only `edfi-im setup` in development and the tests apply it, to an EdFi_Admin that has no
-- dbo.odsinstances yet. On a real EdFi_Admin this system never creates, alters or drops a dbo
-- object.
--
-- Ed-Fi quirks kept on purpose, so the tests see what production has:
--   * odsinstancecontexts and odsinstancederivatives were created under singular names and
--     renamed; their primary keys and id sequences keep the singular names.
--   * Two names were longer than 63 bytes in Ed-Fi's scripts; PostgreSQL truncated them, and
--     they are written here as the server stores them.
--   * ak_apiclients is a unique index on apiclientid (nothing makes apiclients.key unique).
--   * Ed-Fi's index names clash within the schema, so some of its indexes were never created
--     (none on apiclients.application_applicationid or clientaccesstokens.apiclient_apiclientid).
--   * Foreign keys into odsinstances, and from apiclientodsinstances and clientaccesstokens into
--     apiclients, are NO ACTION: deleting an instance or a client means deleting those rows first.

CREATE SCHEMA IF NOT EXISTS dbo;

-- ---------------------------------------------------------------- vendors
CREATE TABLE dbo.vendors (
    vendorid    serial            NOT NULL,
    vendorname  character varying NULL,
    CONSTRAINT vendors_pk PRIMARY KEY (vendorid)
);

-- ---------------------------------------------------------------- users
CREATE TABLE dbo.users (
    userid           serial            NOT NULL,
    email            character varying NULL,
    fullname         character varying NULL,
    vendor_vendorid  integer           NULL,
    CONSTRAINT users_pk PRIMARY KEY (userid),
    CONSTRAINT fk_users_vendors FOREIGN KEY (vendor_vendorid)
        REFERENCES dbo.vendors (vendorid)                     -- ON DELETE NO ACTION
);

-- ---------------------------------------------------------------- applications
CREATE TABLE dbo.applications (
    applicationid          serial                 NOT NULL,
    applicationname        character varying      NULL,
    vendor_vendorid        integer                NULL,
    claimsetname           character varying(255) NULL,
    operationalcontexturi  character varying(255) NOT NULL DEFAULT '',
    CONSTRAINT applications_pk PRIMARY KEY (applicationid),
    CONSTRAINT fk_applications_vendors FOREIGN KEY (vendor_vendorid)
        REFERENCES dbo.vendors (vendorid)                     -- ON DELETE NO ACTION
);
CREATE INDEX ix_vendor_vendorid ON dbo.applications (vendor_vendorid);

-- ---------------------------------------------------------------- ownershiptokens
CREATE TABLE dbo.ownershiptokens (
    ownershiptokenid  smallserial           NOT NULL,
    description       character varying(50) NULL,
    CONSTRAINT ownershiptokens_pkey PRIMARY KEY (ownershiptokenid)
);

-- ---------------------------------------------------------------- odsinstances
CREATE TABLE dbo.odsinstances (
    odsinstanceid     serial                  NOT NULL,
    name              character varying(100)  NOT NULL,
    instancetype      character varying(100)  NULL,
    connectionstring  character varying(1500) NULL,
    CONSTRAINT odsinstances_pk PRIMARY KEY (odsinstanceid)
);
-- NULL instancetype values never collide, so (name, NULL) may repeat.
CREATE UNIQUE INDEX ux_name_instancetype ON dbo.odsinstances (name, instancetype);

-- ---------------------------------------------------------------- apiclients
CREATE TABLE dbo.apiclients (
    apiclientid                               serial                 NOT NULL,
    key                                       character varying(50)  NOT NULL,
    secret                                    character varying(100) NOT NULL,
    name                                      character varying(50)  NOT NULL,
    isapproved                                boolean                NOT NULL,
    usesandbox                                boolean                NOT NULL,
    sandboxtype                               integer                NOT NULL,
    application_applicationid                 integer                NULL,
    user_userid                               integer                NULL,
    keystatus                                 character varying      NULL,
    challengeid                               character varying      NULL,
    challengeexpiry                           timestamp without time zone NULL,
    activationcode                            character varying      NULL,
    activationretried                         integer                NULL,
    secretishashed                            boolean                NOT NULL DEFAULT false,
    studentidentificationsystemdescriptor     character varying(306) NULL,
    creatorownershiptokenid_ownershiptokenid  smallint               NULL,
    CONSTRAINT apiclients_pk PRIMARY KEY (apiclientid),
    CONSTRAINT fk_apiclients_applications FOREIGN KEY (application_applicationid)
        REFERENCES dbo.applications (applicationid),          -- ON DELETE NO ACTION
    CONSTRAINT fk_apiclients_users FOREIGN KEY (user_userid)
        REFERENCES dbo.users (userid),                        -- ON DELETE NO ACTION
    CONSTRAINT fk_apiclients_creatorownershiptokenid_ownershiptokenid
        FOREIGN KEY (creatorownershiptokenid_ownershiptokenid)
        REFERENCES dbo.ownershiptokens (ownershiptokenid)     -- ON DELETE NO ACTION
);
CREATE UNIQUE INDEX ak_apiclients ON dbo.apiclients (apiclientid);
CREATE INDEX ix_user_userid ON dbo.apiclients (user_userid);
CREATE INDEX ix_creatorownershiptokenid_ownershiptokenid
    ON dbo.apiclients (creatorownershiptokenid_ownershiptokenid);

-- ---------------------------------------------------------------- applicationeducationorganizations
-- (the sequence name below is PostgreSQL's own truncation of the serial sequence name)
CREATE TABLE dbo.applicationeducationorganizations (
    applicationeducationorganizationid  serial  NOT NULL,
    educationorganizationid             bigint  NOT NULL,
    application_applicationid           integer NOT NULL,
    CONSTRAINT applicationeducationorganizations_pk PRIMARY KEY (applicationeducationorganizationid),
    CONSTRAINT fk_applicationeducationorganizations_applications FOREIGN KEY (application_applicationid)
        REFERENCES dbo.applications (applicationid)           -- ON DELETE NO ACTION
);
CREATE INDEX ix_application_applicationid
    ON dbo.applicationeducationorganizations (application_applicationid);

-- ---------------------------------------------------------------- apiclientapplicationeducationorganizations
CREATE TABLE dbo.apiclientapplicationeducationorganizations (
    apiclient_apiclientid                integer NOT NULL,
    applicationedorg_applicationedorgid  integer NOT NULL,
    CONSTRAINT apiclientapplicationeducationorganizations_pk
        PRIMARY KEY (apiclient_apiclientid, applicationedorg_applicationedorgid),
    CONSTRAINT fk_apiclientapplicationeducationorganizations_apiclients FOREIGN KEY (apiclient_apiclientid)
        REFERENCES dbo.apiclients (apiclientid) ON DELETE CASCADE,
    CONSTRAINT fk_apiclientapplicationedorg_applicationedorg FOREIGN KEY (applicationedorg_applicationedorgid)
        REFERENCES dbo.applicationeducationorganizations (applicationeducationorganizationid) ON DELETE CASCADE
);
CREATE INDEX ix_apiclient_apiclientid
    ON dbo.apiclientapplicationeducationorganizations (apiclient_apiclientid);
CREATE INDEX ix_applicationedorg_applicationedorgid
    ON dbo.apiclientapplicationeducationorganizations (applicationedorg_applicationedorgid);

-- ---------------------------------------------------------------- apiclientownershiptokens
CREATE TABLE dbo.apiclientownershiptokens (
    apiclientownershiptokenid        serial   NOT NULL,
    apiclient_apiclientid            integer  NOT NULL,
    ownershiptoken_ownershiptokenid  smallint NOT NULL,
    CONSTRAINT apiclientownershiptokens_pkey PRIMARY KEY (apiclientownershiptokenid),
    CONSTRAINT fk_apiclientownershiptokens_apiclients_apiclient_apiclientid FOREIGN KEY (apiclient_apiclientid)
        REFERENCES dbo.apiclients (apiclientid) ON DELETE CASCADE,
    -- 63-byte truncation of ..._ownershiptoken_ownershiptokenid, as it is in Ed-Fi's database
    CONSTRAINT fk_apiclientownershiptokens_ownershiptokens_ownershiptoken_owne
        FOREIGN KEY (ownershiptoken_ownershiptokenid)
        REFERENCES dbo.ownershiptokens (ownershiptokenid) ON DELETE CASCADE
);
CREATE INDEX ix_ownershiptoken_ownershiptokenid
    ON dbo.apiclientownershiptokens (ownershiptoken_ownershiptokenid);
CREATE INDEX ix_apiclientownershiptokens_apiclientid
    ON dbo.apiclientownershiptokens (apiclient_apiclientid) INCLUDE (ownershiptoken_ownershiptokenid);

-- ---------------------------------------------------------------- apiclientodsinstances
CREATE TABLE dbo.apiclientodsinstances (
    apiclientodsinstanceid     serial  NOT NULL,
    apiclient_apiclientid      integer NOT NULL,
    odsinstance_odsinstanceid  integer NOT NULL,
    CONSTRAINT apiclientodsinstances_pkey PRIMARY KEY (apiclientodsinstanceid),
    CONSTRAINT fk_apiclientodsinstances_apiclients_apiclient_apiclientid FOREIGN KEY (apiclient_apiclientid)
        REFERENCES dbo.apiclients (apiclientid),              -- ON DELETE NO ACTION
    CONSTRAINT fk_apiclientodsinstances_odsinstances_odsinstance_odsinstanceid FOREIGN KEY (odsinstance_odsinstanceid)
        REFERENCES dbo.odsinstances (odsinstanceid)           -- ON DELETE NO ACTION
);

-- ---------------------------------------------------------------- clientaccesstokens
CREATE TABLE dbo.clientaccesstokens (
    id                     uuid                        NOT NULL,
    expiration             timestamp without time zone NOT NULL,
    scope                  character varying           NULL,
    apiclient_apiclientid  integer                     NULL,
    CONSTRAINT clientaccesstokens_pk PRIMARY KEY (id),
    CONSTRAINT fk_clientaccesstokens_apiclients FOREIGN KEY (apiclient_apiclientid)
        REFERENCES dbo.apiclients (apiclientid)               -- ON DELETE NO ACTION
);
CREATE INDEX ix_clientaccesstokens_expiration ON dbo.clientaccesstokens (expiration DESC);

-- ---------------------------------------------------------------- odsinstancecontexts
-- The PK and sequence keep the singular names they had before Ed-Fi renamed the table.
CREATE SEQUENCE dbo.odsinstancecontext_odsinstancecontextid_seq AS integer;
CREATE TABLE dbo.odsinstancecontexts (
    odsinstancecontextid       integer               NOT NULL
        DEFAULT nextval('dbo.odsinstancecontext_odsinstancecontextid_seq'::regclass),
    odsinstance_odsinstanceid  integer               NOT NULL,
    contextkey                 character varying(50) NOT NULL,
    contextvalue               character varying(50) NOT NULL,
    CONSTRAINT odsinstancecontext_pkey PRIMARY KEY (odsinstancecontextid),
    CONSTRAINT fk_odsinstancecontext_odsinstance_odsinstanceid FOREIGN KEY (odsinstance_odsinstanceid)
        REFERENCES dbo.odsinstances (odsinstanceid),          -- ON DELETE NO ACTION
    CONSTRAINT uc_odsinstancecontext_odsinstance_odsinstanceid_contextkey
        UNIQUE (odsinstance_odsinstanceid, contextkey)
);
ALTER SEQUENCE dbo.odsinstancecontext_odsinstancecontextid_seq
    OWNED BY dbo.odsinstancecontexts.odsinstancecontextid;

-- ---------------------------------------------------------------- odsinstancederivatives
CREATE SEQUENCE dbo.odsinstancederivative_odsinstancederivativeid_seq AS integer;
CREATE TABLE dbo.odsinstancederivatives (
    odsinstancederivativeid    integer                 NOT NULL
        DEFAULT nextval('dbo.odsinstancederivative_odsinstancederivativeid_seq'::regclass),
    odsinstance_odsinstanceid  integer                 NOT NULL,
    derivativetype             character varying(50)   NOT NULL,
    connectionstring           character varying(1500) NULL,
    CONSTRAINT odsinstancederivative_pkey PRIMARY KEY (odsinstancederivativeid),
    CONSTRAINT fk_odsinstancederivative_odsinstance_odsinstanceid FOREIGN KEY (odsinstance_odsinstanceid)
        REFERENCES dbo.odsinstances (odsinstanceid),          -- ON DELETE NO ACTION
    -- 63-byte truncation of ..._derivativetype, as it is in Ed-Fi's database
    CONSTRAINT uc_odsinstancederivative_odsinstance_odsinstanceid_derivativety
        UNIQUE (odsinstance_odsinstanceid, derivativetype)
);
ALTER SEQUENCE dbo.odsinstancederivative_odsinstancederivativeid_seq
    OWNED BY dbo.odsinstancederivatives.odsinstancederivativeid;
