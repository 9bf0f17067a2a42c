-- Development copy of the EdFi_Admin tables this system touches, with the table and column
-- names ODS/API 7.x uses (Ed-Fi-ODS Artifacts/PgSql/Structure/Admin, after 0131, 0141-0145,
-- 0155, 0160, 0161, 0171, 0174). In production these tables already exist: every statement
-- here is IF NOT EXISTS so an existing EdFi_Admin is left as it is.
CREATE SCHEMA IF NOT EXISTS dbo;

CREATE TABLE IF NOT EXISTS dbo.apiclients (
    apiclientid SERIAL NOT NULL,
    key VARCHAR(50) NOT NULL,
    secret VARCHAR(100) NOT NULL,
    name VARCHAR(50) NOT NULL,
    isapproved BOOLEAN NOT NULL,
    usesandbox BOOLEAN NOT NULL,
    sandboxtype INT NOT NULL,
    application_applicationid INT NULL,
    user_userid INT NULL,
    keystatus VARCHAR NULL,
    challengeid VARCHAR NULL,
    challengeexpiry TIMESTAMP NULL,
    activationcode VARCHAR NULL,
    activationretried INT NULL,
    secretishashed BOOLEAN NOT NULL DEFAULT FALSE,
    studentidentificationsystemdescriptor VARCHAR(306) NULL,
    CONSTRAINT apiclients_pk PRIMARY KEY (apiclientid)
);

CREATE TABLE IF NOT EXISTS dbo.odsinstances (
    odsinstanceid SERIAL NOT NULL,
    name VARCHAR(100) NOT NULL,
    instancetype VARCHAR(100) NULL,
    connectionstring TEXT NULL,
    CONSTRAINT odsinstances_pk PRIMARY KEY (odsinstanceid)
);

CREATE TABLE IF NOT EXISTS dbo.apiclientodsinstances (
    apiclientodsinstanceid SERIAL PRIMARY KEY NOT NULL,
    apiclient_apiclientid INT NOT NULL
        CONSTRAINT fk_apiclientodsinstances_apiclients_apiclient_apiclientid
        REFERENCES dbo.apiclients (apiclientid) ON DELETE CASCADE,
    odsinstance_odsinstanceid INT NOT NULL
        CONSTRAINT fk_apiclientodsinstances_odsinstances_odsinstance_odsinstanceid
        REFERENCES dbo.odsinstances (odsinstanceid) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS dbo.odsinstancecontexts (
    odsinstancecontextid SERIAL PRIMARY KEY NOT NULL,
    odsinstance_odsinstanceid INT NOT NULL
        CONSTRAINT fk_odsinstancecontext_odsinstance_odsinstanceid
        REFERENCES dbo.odsinstances (odsinstanceid),
    contextkey VARCHAR(50) NOT NULL,
    contextvalue VARCHAR(50) NOT NULL,
    CONSTRAINT uc_odsinstancecontext_odsinstance_odsinstanceid_contextkey
        UNIQUE (odsinstance_odsinstanceid, contextkey)
);

CREATE TABLE IF NOT EXISTS dbo.odsinstancederivatives (
    odsinstancederivativeid SERIAL PRIMARY KEY NOT NULL,
    odsinstance_odsinstanceid INT NOT NULL
        CONSTRAINT fk_odsinstancederivative_odsinstance_odsinstanceid
        REFERENCES dbo.odsinstances (odsinstanceid),
    derivativetype VARCHAR(50) NOT NULL,
    connectionstring VARCHAR(1500) NOT NULL,
    CONSTRAINT uc_odsinstancederivative_odsinstance_odsinstanceid_derivativetype
        UNIQUE (odsinstance_odsinstanceid, derivativetype)
);
