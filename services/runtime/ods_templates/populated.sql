-- Development stand-in for EdFi_Ods_Populated_Template: the minimal schema plus sample data,
-- noticeably larger (tens of thousands of rows) so clones take measurable time.
\i minimal.sql
INSERT INTO edfi.educationorganization
    SELECT 255901000 + g, 'Grand Bend School ' || g, 'edfi.School' FROM generate_series(1, 40) g;
INSERT INTO edfi.school SELECT 255901000 + g, 255901 FROM generate_series(1, 40) g;
INSERT INTO edfi.student (studentuniqueid, firstname, lastsurname, birthdate)
    SELECT 'S' || lpad(g::text, 8, '0'), 'First' || g, 'Last' || (g % 997),
           DATE '2008-01-01' + (g % 3650)
    FROM generate_series(1, 50000) g;
INSERT INTO edfi.studentschoolassociation
    SELECT studentusi, 255901000 + 1 + (studentusi % 40), DATE '2026-08-20'
    FROM edfi.student;
