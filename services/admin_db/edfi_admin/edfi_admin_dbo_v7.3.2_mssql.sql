-- DEVELOPMENT ONLY: the tables of Ed-Fi ODS/API 7.3.2's EdFi_Admin (dbo) on SQL Server that
-- this system reads, writes or must clear, and every table their foreign keys reach. Written
-- by this project from the facts of Ed-Fi-ODS v7.3.2 Artifacts/MsSql/Structure/Admin/ (the
-- final state after its 36 scripts: names, types, nullability, keys, unique indexes, foreign-key
-- actions); not Ed-Fi's scripts. A real EdFi_Admin is deployed with Ed-Fi's own scripts, and
-- this system never creates, alters or drops a dbo object there.
-- Differences from the PostgreSQL copy that come from Ed-Fi itself: nvarchar, IDENTITY,
-- AK_ApiClients unique on [Key], the column
-- ApplicationEducationOrganization_ApplicationEducationOrganizationId, a unique index that
-- counts NULL InstanceTypes as equal.

CREATE TABLE dbo.Vendors (
    VendorId INT IDENTITY(1, 1) NOT NULL CONSTRAINT Vendors_PK PRIMARY KEY,
    VendorName NVARCHAR(MAX) NULL
);
CREATE TABLE dbo.Users (
    UserId INT IDENTITY(1, 1) NOT NULL CONSTRAINT Users_PK PRIMARY KEY,
    Email NVARCHAR(MAX) NULL,
    FullName NVARCHAR(MAX) NULL,
    Vendor_VendorId INT NULL CONSTRAINT FK_Users_Vendors REFERENCES dbo.Vendors (VendorId)
);
CREATE INDEX IX_Vendor_VendorId ON dbo.Users (Vendor_VendorId);
CREATE TABLE dbo.Applications (
    ApplicationId INT IDENTITY(1, 1) NOT NULL CONSTRAINT Applications_PK PRIMARY KEY,
    ApplicationName NVARCHAR(MAX) NULL,
    Vendor_VendorId INT NULL CONSTRAINT FK_Applications_Vendors REFERENCES dbo.Vendors (VendorId),
    ClaimSetName NVARCHAR(255) NULL,
    OperationalContextUri NVARCHAR(255) NOT NULL
        CONSTRAINT Applications_DF_OperationalContextUri DEFAULT ('')
);
CREATE INDEX IX_Vendor_VendorId ON dbo.Applications (Vendor_VendorId);
CREATE TABLE dbo.ApplicationEducationOrganizations (
    ApplicationEducationOrganizationId INT IDENTITY(1, 1) NOT NULL
        CONSTRAINT ApplicationEducationOrganizations_PK PRIMARY KEY,
    EducationOrganizationId BIGINT NOT NULL,
    Application_ApplicationId INT NOT NULL
        CONSTRAINT FK_ApplicationEducationOrganizations_Applications
        REFERENCES dbo.Applications (ApplicationId)
);
CREATE INDEX IX_Application_ApplicationId ON dbo.ApplicationEducationOrganizations (Application_ApplicationId);
CREATE TABLE dbo.OwnershipTokens (
    OwnershipTokenId SMALLINT IDENTITY(1, 1) NOT NULL PRIMARY KEY,
    Description VARCHAR(50) NULL
);
CREATE TABLE dbo.ApiClients (
    ApiClientId INT IDENTITY(1, 1) NOT NULL CONSTRAINT ApiClients_PK PRIMARY KEY,
    [Key] NVARCHAR(50) NOT NULL,
    Secret NVARCHAR(100) NOT NULL,
    Name NVARCHAR(50) NOT NULL,
    IsApproved BIT NOT NULL,
    UseSandbox BIT NOT NULL,
    SandboxType INT NOT NULL,
    Application_ApplicationId INT NULL
        CONSTRAINT FK_ApiClients_Applications REFERENCES dbo.Applications (ApplicationId),
    User_UserId INT NULL CONSTRAINT FK_ApiClients_Users REFERENCES dbo.Users (UserId),
    KeyStatus NVARCHAR(MAX) NULL,
    ChallengeId NVARCHAR(MAX) NULL,
    ChallengeExpiry DATETIME NULL,
    ActivationCode NVARCHAR(MAX) NULL,
    ActivationRetried INT NULL,
    SecretIsHashed BIT NOT NULL CONSTRAINT ApiClients_DF_SecretIsHashed DEFAULT ((0)),
    StudentIdentificationSystemDescriptor NVARCHAR(306) NULL,
    CreatorOwnershipTokenId_OwnershipTokenId SMALLINT NULL
        CONSTRAINT FK_ApiClients_OwnershipTokens_CreatorOwnershipTokenId_OwnershipTokenId
        REFERENCES dbo.OwnershipTokens (OwnershipTokenId)
);
CREATE UNIQUE INDEX AK_ApiClients ON dbo.ApiClients ([Key]);
CREATE INDEX IX_Application_ApplicationId ON dbo.ApiClients (Application_ApplicationId);
CREATE INDEX IX_User_UserId ON dbo.ApiClients (User_UserId);
CREATE INDEX IX_CreatorOwnershipTokenId_OwnershipTokenId
    ON dbo.ApiClients (CreatorOwnershipTokenId_OwnershipTokenId);
CREATE TABLE dbo.ClientAccessTokens (
    Id UNIQUEIDENTIFIER NOT NULL CONSTRAINT ClientAccessTokens_PK PRIMARY KEY,
    Expiration DATETIME NOT NULL,
    Scope NVARCHAR(MAX) NULL,
    ApiClient_ApiClientId INT NULL
        CONSTRAINT FK_ClientAccessTokens_ApiClients REFERENCES dbo.ApiClients (ApiClientId)
);
CREATE INDEX IX_ApiClient_ApiClientId ON dbo.ClientAccessTokens (ApiClient_ApiClientId);
CREATE INDEX IX_ClientAccessTokens_Expiration ON dbo.ClientAccessTokens (Expiration DESC);
CREATE TABLE dbo.ApiClientOwnershipTokens (
    ApiClientOwnershipTokenId INT IDENTITY(1, 1) NOT NULL PRIMARY KEY,
    ApiClient_ApiClientId INT NOT NULL
        CONSTRAINT FK_ApiClientOwnershipTokens_ApiClients_ApiClient_ApiClientId
        REFERENCES dbo.ApiClients (ApiClientId) ON DELETE CASCADE,
    OwnershipToken_OwnershipTokenId SMALLINT NOT NULL
        CONSTRAINT FK_ApiClientOwnershipTokens_OwnershipTokens_OwnershipToken_OwnershipTokenId
        REFERENCES dbo.OwnershipTokens (OwnershipTokenId) ON DELETE CASCADE
);
CREATE INDEX IX_ApiClientOwnershipTokens_ApiClientId ON dbo.ApiClientOwnershipTokens
    (ApiClient_ApiClientId) INCLUDE (OwnershipToken_OwnershipTokenId);
CREATE TABLE dbo.ApiClientApplicationEducationOrganizations (
    ApiClient_ApiClientId INT NOT NULL
        CONSTRAINT FK_ApiClientApplicationEducationOrganizations_ApiClients
        REFERENCES dbo.ApiClients (ApiClientId) ON DELETE CASCADE,
    ApplicationEducationOrganization_ApplicationEducationOrganizationId INT NOT NULL
        CONSTRAINT FK_ApiClientApplicationEducationOrganizations_ApplicationEducationOrganizations
        REFERENCES dbo.ApplicationEducationOrganizations (ApplicationEducationOrganizationId)
        ON DELETE CASCADE,
    CONSTRAINT ApiClientApplicationEducationOrganizations_PK PRIMARY KEY
        (ApiClient_ApiClientId, ApplicationEducationOrganization_ApplicationEducationOrganizationId)
);
CREATE INDEX IX_ApiClient_ApiClientId ON dbo.ApiClientApplicationEducationOrganizations
    (ApiClient_ApiClientId);
CREATE INDEX IX_ApplicationEducationOrganization_ApplicationEducationOrganizationId
    ON dbo.ApiClientApplicationEducationOrganizations
    (ApplicationEducationOrganization_ApplicationEducationOrganizationId);
CREATE TABLE dbo.OdsInstances (
    OdsInstanceId INT IDENTITY(1, 1) NOT NULL CONSTRAINT OdsInstances_PK PRIMARY KEY,
    Name NVARCHAR(100) NOT NULL,
    InstanceType NVARCHAR(100) NULL,
    ConnectionString NVARCHAR(1500) NULL
);
CREATE UNIQUE INDEX UX_Name_InstanceType ON dbo.OdsInstances (Name, InstanceType);
CREATE TABLE dbo.OdsInstanceContexts (
    OdsInstanceContextId INT IDENTITY(1, 1) NOT NULL PRIMARY KEY,
    OdsInstance_OdsInstanceId INT NOT NULL
        CONSTRAINT FK_OdsInstanceContext_OdsInstance_OdsInstanceId
        REFERENCES dbo.OdsInstances (OdsInstanceId),
    ContextKey NVARCHAR(50) NOT NULL,
    ContextValue NVARCHAR(50) NOT NULL,
    CONSTRAINT UC_OdsInstanceContext_OdsInstance_OdsInstanceId_ContextKey
        UNIQUE (OdsInstance_OdsInstanceId, ContextKey)
);
CREATE TABLE dbo.OdsInstanceDerivatives (
    OdsInstanceDerivativeId INT IDENTITY(1, 1) NOT NULL PRIMARY KEY,
    OdsInstance_OdsInstanceId INT NOT NULL
        CONSTRAINT FK_OdsInstanceDerivative_OdsInstance_OdsInstanceId
        REFERENCES dbo.OdsInstances (OdsInstanceId),
    DerivativeType NVARCHAR(50) NOT NULL,
    ConnectionString NVARCHAR(1500) NULL,
    CONSTRAINT UC_OdsInstanceDerivative_OdsInstance_OdsInstanceId_DerivativeType
        UNIQUE (OdsInstance_OdsInstanceId, DerivativeType)
);
CREATE TABLE dbo.ApiClientOdsInstances (
    ApiClientOdsInstanceId INT IDENTITY(1, 1) NOT NULL PRIMARY KEY,
    ApiClient_ApiClientId INT NOT NULL
        CONSTRAINT FK_ApiClientOdsInstances_ApiClients_ApiClient_ApiClientId
        REFERENCES dbo.ApiClients (ApiClientId),
    OdsInstance_OdsInstanceId INT NOT NULL
        CONSTRAINT FK_ApiClientOdsInstances_OdsInstances_OdsInstance_OdsInstanceId
        REFERENCES dbo.OdsInstances (OdsInstanceId)
);
