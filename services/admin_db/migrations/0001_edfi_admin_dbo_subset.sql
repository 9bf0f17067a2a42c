-- Formerly created a development copy of some EdFi_Admin dbo tables when they were missing.
-- This system never creates, alters or drops a dbo object of a real EdFi_Admin: in development
-- and in the tests, `edfi-im setup` and the test fixtures build Ed-Fi 7.3.2's own dbo tables
-- (infra/edfi_admin/postgresql/) before the migrations run. The migration keeps its id so that
-- installations which applied it see nothing new.
SELECT 1;
