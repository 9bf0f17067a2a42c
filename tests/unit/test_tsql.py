"""Golden T-SQL: identifiers bracketed, literals escaped, and every statement of every operation
in its order, for SQL Server and Azure SQL Database (no SQL Server runs here: level 1 of the
README's SQL Server section)."""

from __future__ import annotations

import pytest

from services.rules import tsql


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("EdFi_Ods_Grand_Bend", "[EdFi_Ods_Grand_Bend]"),
        ("odd]name", "[odd]]name]"),
        ("x]]; DROP DATABASE master; --", "[x]]]]; DROP DATABASE master; --]"),
        ("a'b", "[a'b]"),
        ("ünïcødé", "[ünïcødé]"),
        ("x" * 128, "[" + "x" * 128 + "]"),
    ],
)
def test_identifiers_are_bracketed_with_closing_brackets_doubled(name: str, quoted: str) -> None:
    assert tsql.identifier(name) == quoted


@pytest.mark.parametrize("name", ["", "x" * 129, "a\x00b", "a\nb", " lead", "trail ", "tab\t"])
def test_names_sql_server_cannot_hold_are_refused(name: str) -> None:
    with pytest.raises(tsql.TsqlValueError):
        tsql.identifier(name)


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("/var/opt/mssql/backup/Minimal.bak", "N'/var/opt/mssql/backup/Minimal.bak'"),
        ("C:\\Backups\\O'Brien.bak", "N'C:\\Backups\\O''Brien.bak'"),
        ("'; DROP DATABASE x; --", "N'''; DROP DATABASE x; --'"),
    ],
)
def test_literals_are_unicode_with_quotes_doubled(value: str, quoted: str) -> None:
    assert tsql.literal(value) == quoted


def test_literals_refuse_control_characters() -> None:
    with pytest.raises(tsql.TsqlValueError):
        tsql.literal("a\x00b")


def test_restore_never_replaces_and_moves_every_file() -> None:
    moves = [("Logical'Data", "/d/x.mdf"), ("Log", "/l/x_log.ldf")]
    sql, params = tsql.restore("edfi_im_staging_1", "/b/Min'imal.bak", moves)
    assert sql == (
        "RESTORE DATABASE [edfi_im_staging_1] FROM DISK = N'/b/Min''imal.bak' WITH "
        "MOVE N'Logical''Data' TO N'/d/x.mdf', MOVE N'Log' TO N'/l/x_log.ldf', RECOVERY, "
        "STATS = 5"
    )
    assert "REPLACE" not in sql
    assert params == ()


def test_file_list_maps_data_and_log_files_to_files_named_for_the_database() -> None:
    files = [
        tsql.BackupFile("EdFi_Ods_Populated_Template", "D"),
        tsql.BackupFile("EdFi_Ods_Populated_Template_log", "L"),
        tsql.BackupFile("Extra", "D"),
    ]
    assert tsql.moves(files, "edfi_im_staging_ab", "/var/opt/mssql/data/", "/var/log/") == [
        ("EdFi_Ods_Populated_Template", "/var/opt/mssql/data/edfi_im_staging_ab.mdf"),
        ("EdFi_Ods_Populated_Template_log", "/var/log/edfi_im_staging_ab_log.ldf"),
        ("Extra", "/var/opt/mssql/data/edfi_im_staging_ab_2.ndf"),
    ]
    windows = tsql.moves(files[:2], "x", "D:\\Data\\", "E:\\Logs")
    assert windows == [
        ("EdFi_Ods_Populated_Template", "D:\\Data\\x.mdf"),
        ("EdFi_Ods_Populated_Template_log", "E:\\Logs\\x_log.ldf"),
    ]


@pytest.mark.parametrize(
    "files",
    [
        [tsql.BackupFile("d", "D"), tsql.BackupFile("l", "L"), tsql.BackupFile("fs", "S")],
        [tsql.BackupFile("d", "D")],
        [tsql.BackupFile("l", "L")],
    ],
)
def test_backups_this_system_cannot_place_are_refused(files: list[tsql.BackupFile]) -> None:
    with pytest.raises(tsql.TsqlValueError):
        tsql.moves(files, "x", "/d", "/l")


def test_modify_file_takes_escaped_literals() -> None:
    assert tsql.rename_file("db]x", "old'name", "new") == (
        "ALTER DATABASE [db]]x] MODIFY FILE (NAME = N'old''name', NEWNAME = N'new')",
        (),
    )


def test_rename_ends_sessions_in_the_same_batch_on_sql_server_only() -> None:
    assert tsql.modify_name("a", "b") == (
        "ALTER DATABASE [a] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; "
        "ALTER DATABASE [a] MODIFY NAME = [b]",
        (),
    )
    assert tsql.modify_name("a", "b", azure=True) == ("ALTER DATABASE [a] MODIFY NAME = [b]", ())


def test_drop_ends_sessions_and_restores_them_when_the_drop_fails() -> None:
    assert tsql.drop("x") == (
        "IF DATABASEPROPERTYEX(?, 'Status') = 'ONLINE' "
        "ALTER DATABASE [x] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; "
        "BEGIN TRY DROP DATABASE IF EXISTS [x]; END TRY "
        "BEGIN CATCH IF DB_ID(?) IS NOT NULL ALTER DATABASE [x] SET MULTI_USER; THROW; END CATCH",
        ("x", "x"),
    )
    assert tsql.drop("x", azure=True) == ("DROP DATABASE IF EXISTS [x]", ())


def test_marker_is_a_database_extended_property_passed_as_parameters() -> None:
    sql, params = tsql.write_marker("db", '{"managedBy": "x"}')
    assert sql == (
        "IF EXISTS (SELECT 1 FROM [db].sys.extended_properties WHERE class = 0 AND name = ?) "
        "EXEC [db].sys.sp_updateextendedproperty @name = ?, @value = ? "
        "ELSE EXEC [db].sys.sp_addextendedproperty @name = ?, @value = ?"
    )
    assert params == (
        "edfi_im_marker",
        "edfi_im_marker",
        '{"managedBy": "x"}',
        "edfi_im_marker",
        '{"managedBy": "x"}',
    )
    azure, _ = tsql.write_marker("db", "m", cross_database=False)
    assert "[db]" not in azure and "EXEC sys.sp_addextendedproperty" in azure


def test_backup_is_copy_only_and_azure_copies() -> None:
    assert tsql.backup("EdFi_Ods_Minimal_Template", "/b/edfi_im_staging_1.bak") == (
        "BACKUP DATABASE [EdFi_Ods_Minimal_Template] TO DISK = N'/b/edfi_im_staging_1.bak' "
        "WITH COPY_ONLY, INIT, CHECKSUM, STATS = 5",
        (),
    )
    assert tsql.copy_database("T", "S") == ("CREATE DATABASE [S] AS COPY OF [T]", ())


def test_staging_pattern_escapes_like_wildcards() -> None:
    assert tsql.staging_databases("edfi_im_staging_") == (
        "SELECT name, state_desc FROM sys.databases WHERE name LIKE ?",
        ("edfi[_]im[_]staging[_]%",),
    )


def test_application_locks() -> None:
    resource = tsql.lock_resource("i", -1)
    assert resource == "edfi-im/i/ffffffffffffffff"
    assert len(resource) <= 32, "sys.dm_tran_locks shows 32 characters of it"
    assert tsql.try_applock(resource) == (
        "SET NOCOUNT ON; DECLARE @r int; EXEC @r = sp_getapplock @Resource = ?, "
        "@LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = 0; "
        "SELECT CASE WHEN @r >= 0 THEN 1 ELSE 0 END",
        (resource,),
    )
    sql, _ = tsql.wait_applock(resource)
    assert "@LockOwner = 'Transaction', @LockTimeout = -1" in sql
    with pytest.raises(ValueError, match="owner"):
        tsql.try_applock(resource, owner="Session'; --")
    assert tsql.lock_holder("edfi-im/i/00")[1] == ("%[[]edfi-im/i/00[]]%",)


def test_database_facts_read_state_size_and_sessions_with_the_name_as_a_parameter() -> None:
    sql, params = tsql.database_facts("EdFi_Ods_'x]")
    assert sql == (
        "SELECT d.state_desc, "
        "(SELECT CAST(SUM(CAST(f.size AS bigint)) * 8192 AS bigint) FROM sys.master_files f "
        "WHERE f.database_id = d.database_id), "
        "(SELECT COUNT(*) FROM sys.dm_exec_sessions s WHERE s.database_id = d.database_id "
        "AND s.session_id <> @@SPID) "
        "FROM sys.databases d WHERE d.name = ?"
    )
    assert params == ("EdFi_Ods_'x]",)
