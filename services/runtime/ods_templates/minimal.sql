-- Development stand-in for EdFi_Ods_Minimal_Template: a few Ed-Fi-like tables with the
-- descriptors and one education organization a fresh ODS starts with.
CREATE SCHEMA edfi;

CREATE TABLE edfi.descriptor (
    descriptorid SERIAL PRIMARY KEY,
    namespace VARCHAR(255) NOT NULL,
    codevalue VARCHAR(50) NOT NULL,
    shortdescription VARCHAR(75) NOT NULL,
    UNIQUE (namespace, codevalue)
);
CREATE TABLE edfi.educationorganization (
    educationorganizationid BIGINT PRIMARY KEY,
    nameofinstitution VARCHAR(75) NOT NULL,
    discriminator VARCHAR(128)
);
CREATE TABLE edfi.localeducationagency (
    localeducationagencyid BIGINT PRIMARY KEY
        REFERENCES edfi.educationorganization (educationorganizationid)
);
CREATE TABLE edfi.school (
    schoolid BIGINT PRIMARY KEY REFERENCES edfi.educationorganization (educationorganizationid),
    localeducationagencyid BIGINT REFERENCES edfi.localeducationagency (localeducationagencyid)
);
CREATE TABLE edfi.student (
    studentusi SERIAL PRIMARY KEY,
    studentuniqueid VARCHAR(32) NOT NULL UNIQUE,
    firstname VARCHAR(75) NOT NULL,
    lastsurname VARCHAR(75) NOT NULL,
    birthdate DATE NOT NULL
);
CREATE TABLE edfi.studentschoolassociation (
    studentusi INT NOT NULL REFERENCES edfi.student (studentusi),
    schoolid BIGINT NOT NULL REFERENCES edfi.school (schoolid),
    entrydate DATE NOT NULL,
    PRIMARY KEY (studentusi, schoolid, entrydate)
);

INSERT INTO edfi.descriptor (namespace, codevalue, shortdescription) VALUES
    ('uri://ed-fi.org/GradeLevelDescriptor', 'Ninth grade', 'Ninth grade'),
    ('uri://ed-fi.org/GradeLevelDescriptor', 'Tenth grade', 'Tenth grade'),
    ('uri://ed-fi.org/SexDescriptor', 'Female', 'Female'),
    ('uri://ed-fi.org/SexDescriptor', 'Male', 'Male');
INSERT INTO edfi.educationorganization VALUES (255901, 'Grand Bend ISD', 'edfi.LocalEducationAgency');
INSERT INTO edfi.localeducationagency VALUES (255901);
