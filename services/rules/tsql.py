"""T-SQL for the ODS server on SQL Server and Azure SQL Database: pure, so every statement of
every operation is a golden test (tests/unit/test_tsql.py).

Identifiers are validated and bracketed; values go as ODBC parameters (`?`) wherever T-SQL takes
them, and as escaped `N'…'` literals where it does not (RESTORE, BACKUP, MODIFY FILE, the file
paths of MOVE). Nothing here formats unchecked input into SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.rules.errors import PermanentError

Statement = tuple[str, tuple[object, ...]]

MAX_IDENTIFIER = 128  # sysname
MARKER_PROPERTY = "edfi_im_marker"  # the extended property that carries this system's mark
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class TsqlValueError(PermanentError):
    """A name or value that cannot be written into T-SQL safely."""


def identifier(name: str) -> str:
    """`name` as a bracketed identifier (`]` doubled), after checking it is one."""
    if not name or len(name) > MAX_IDENTIFIER or _CONTROL.search(name) or name != name.strip():
        raise TsqlValueError(
            f"{name!r} is not a SQL Server database name (1-128 characters, no control "
            "characters, no spaces at either end)"
        )
    return "[" + name.replace("]", "]]") + "]"


def literal(value: str) -> str:
    """`value` as a Unicode string literal (`'` doubled); control characters refused."""
    if _CONTROL.search(value):
        raise TsqlValueError(f"{value!r} holds control characters")
    return "N'" + value.replace("'", "''") + "'"


def lock_resource(kind: str, key: int) -> str:
    """The sp_getapplock resource of one lock: short enough (26 characters) that
    sys.dm_tran_locks shows it whole, so a waiting job can say who holds it."""
    return f"edfi-im/{kind}/{key & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def lock_holder(resource: str) -> Statement:
    """Who holds an application lock (needs VIEW SERVER STATE)."""
    pattern = "%" + re.sub(r"([\[\]%_])", r"[\1]", f"[{resource}]") + "%"
    return (
        "SELECT TOP (1) l.request_session_id, s.program_name, s.host_name "
        "FROM sys.dm_tran_locks l JOIN sys.dm_exec_sessions s "
        "ON s.session_id = l.request_session_id "
        "WHERE l.resource_type = 'APPLICATION' AND l.request_status = 'GRANT' "
        "AND l.resource_database_id = DB_ID() AND l.resource_description LIKE ?",
        (pattern,),
    )


# --- reading the server --------------------------------------------------------------------


def database_state(name: str) -> Statement:
    """One row (name, state_desc, user_access_desc) when the database exists."""
    return (
        "SELECT name, state_desc, user_access_desc FROM sys.databases WHERE name = ?",
        (name,),
    )


def read_marker(name: str, *, cross_database: bool = True) -> Statement:
    """The mark of an ONLINE database (its extended property). Azure SQL Database has no
    three-part names: there the statement runs on a connection to the database itself."""
    where = (
        f"{identifier(name)}.sys.extended_properties"
        if cross_database
        else "sys.extended_properties"
    )
    return (
        f"SELECT CAST(value AS nvarchar(4000)) FROM {where} WHERE class = 0 AND name = ?",
        (MARKER_PROPERTY,),
    )


def write_marker(name: str, marker: str, *, cross_database: bool = True) -> Statement:
    """Add or replace the mark (idempotent)."""
    prefix = f"{identifier(name)}.sys." if cross_database else "sys."
    return (
        f"IF EXISTS (SELECT 1 FROM {prefix}extended_properties WHERE class = 0 AND name = ?) "
        f"EXEC {prefix}sp_updateextendedproperty @name = ?, @value = ? "
        f"ELSE EXEC {prefix}sp_addextendedproperty @name = ?, @value = ?",
        (MARKER_PROPERTY, MARKER_PROPERTY, marker, MARKER_PROPERTY, marker),
    )


def user_databases() -> Statement:
    """Every database but the server's own (master, tempdb, model, msdb)."""
    return ("SELECT name, state_desc FROM sys.databases WHERE database_id > 4 ORDER BY name", ())


def staging_databases(prefix: str) -> Statement:
    """Databases whose name starts with `prefix` (LIKE's wildcards escaped)."""
    pattern = re.sub(r"([\[\]%_])", r"[\1]", prefix) + "%"
    return ("SELECT name, state_desc FROM sys.databases WHERE name LIKE ?", (pattern,))


def sessions_on(name: str) -> Statement:
    """Who is connected to a database (needs VIEW SERVER STATE to see others' sessions)."""
    return (
        "SELECT TOP (5) session_id, program_name, host_name FROM sys.dm_exec_sessions "
        "WHERE database_id = DB_ID(?) AND session_id <> @@SPID ORDER BY login_time",
        (name,),
    )


def database_facts(name: str) -> Statement:
    """A database's state, size (its files' pages of 8 KB) and sessions (VIEW SERVER STATE
    is needed to count others' sessions, VIEW ANY DEFINITION to see the files)."""
    return (
        "SELECT d.state_desc, "
        "(SELECT CAST(SUM(CAST(f.size AS bigint)) * 8192 AS bigint) FROM sys.master_files f "
        "WHERE f.database_id = d.database_id), "
        "(SELECT COUNT(*) FROM sys.dm_exec_sessions s WHERE s.database_id = d.database_id "
        "AND s.session_id <> @@SPID) "
        "FROM sys.databases d WHERE d.name = ?",
        (name,),
    )


def engine_edition() -> Statement:
    """5: Azure SQL Database (no RESTORE, no SINGLE_USER; AS COPY OF instead)."""
    return ("SELECT CAST(SERVERPROPERTY('EngineEdition') AS int)", ())


def default_paths() -> Statement:
    """The server's default data, log and backup directories (SQL Server 2012+; the backup
    path 2019+), for where restored files and template backups go."""
    return (
        "SELECT CAST(SERVERPROPERTY('InstanceDefaultDataPath') AS nvarchar(4000)), "
        "CAST(SERVERPROPERTY('InstanceDefaultLogPath') AS nvarchar(4000)), "
        "CAST(SERVERPROPERTY('InstanceDefaultBackupPath') AS nvarchar(4000))",
        (),
    )


def restore_progress(session_id: int) -> Statement:
    """How far a RESTORE (or BACKUP, or copy) of another session has got, in percent."""
    return (
        "SELECT percent_complete FROM sys.dm_exec_requests WHERE session_id = ?",
        (session_id,),
    )


# --- locks (sp_getapplock: the counterpart of PostgreSQL's advisory locks) -----------------


def try_applock(resource: str, *, owner: str = "Session") -> Statement:
    """One row: 1 when the lock was granted now, 0 when another session holds it."""
    return (
        "SET NOCOUNT ON; DECLARE @r int; "
        "EXEC @r = sp_getapplock @Resource = ?, @LockMode = 'Exclusive', "
        f"@LockOwner = '{_owner(owner)}', @LockTimeout = 0; "
        "SELECT CASE WHEN @r >= 0 THEN 1 ELSE 0 END",
        (resource,),
    )


def wait_applock(resource: str, *, owner: str = "Transaction") -> Statement:
    """Wait for the lock (no time-out): it is released with the transaction (or session)."""
    return (
        "SET NOCOUNT ON; DECLARE @r int; "
        "EXEC @r = sp_getapplock @Resource = ?, @LockMode = 'Exclusive', "
        f"@LockOwner = '{_owner(owner)}', @LockTimeout = -1; "
        "SELECT @r",
        (resource,),
    )


def release_applock(resource: str, *, owner: str = "Session") -> Statement:
    return (
        f"EXEC sp_releaseapplock @Resource = ?, @LockOwner = '{_owner(owner)}'",
        (resource,),
    )


def held_applocks(resources: list[str]) -> Statement:
    """Which of these Session locks other sessions hold now (APPLOCK_TEST says 0 for them)."""
    if not resources:
        raise ValueError("no resources")
    rows = ", ".join("(?)" for _ in resources)
    return (
        f"SELECT r.resource FROM (VALUES {rows}) AS r(resource) "
        "WHERE APPLOCK_TEST('public', r.resource, 'Exclusive', 'Session') = 0",
        tuple(resources),
    )


def _owner(owner: str) -> str:
    if owner not in ("Session", "Transaction"):
        raise ValueError(f"lock owner {owner!r}")
    return owner


# --- create: a template's .bak restored, a template database backed up and restored, or Azure
# SQL Database's copy ----------------------------------------------------------------------


def file_list(backup_path: str) -> Statement:
    """The files a backup holds: LogicalName, PhysicalName, Type (D data, L log, …)."""
    return (f"RESTORE FILELISTONLY FROM DISK = {literal(backup_path)}", ())


@dataclass(frozen=True)
class BackupFile:
    logical_name: str
    kind: str  # RESTORE FILELISTONLY's Type: D (data), L (log), S (FILESTREAM), F (full text)


def join_path(directory: str, filename: str) -> str:
    """A file in a server directory (Windows `\\` or Linux `/`, as the directory uses)."""
    sep = "\\" if "\\" in directory else "/"
    return directory.rstrip("\\/") + sep + filename


def moves(
    files: list[BackupFile], target: str, data_dir: str, log_dir: str
) -> list[tuple[str, str]]:
    """Where each file of the backup goes (logical name -> physical path), named after the
    database it becomes as Ed-Fi names them: `<target>.mdf`, `<target>_log.ldf`, further
    files `<target>_2.ndf`, `<target>_log2.ldf`."""
    out: list[tuple[str, str]] = []
    data = logs = 0
    for f in files:
        if f.kind == "D":
            data += 1
            name = f"{target}.mdf" if data == 1 else f"{target}_{data}.ndf"
            out.append((f.logical_name, join_path(data_dir, name)))
        elif f.kind == "L":
            logs += 1
            name = f"{target}_log.ldf" if logs == 1 else f"{target}_log{logs}.ldf"
            out.append((f.logical_name, join_path(log_dir, name)))
        else:
            raise TsqlValueError(
                f"the backup holds a file of type {f.kind!r} ({f.logical_name!r}): only data "
                "(D) and log (L) files are restored"
            )
    if data == 0 or logs == 0:
        raise TsqlValueError("the backup holds no data file or no log file")
    return out


def restore(database: str, backup_path: str, file_moves: list[tuple[str, str]]) -> Statement:
    """RESTORE a new database (never REPLACE: an existing database is never overwritten)."""
    options = ", ".join(f"MOVE {literal(lg)} TO {literal(ph)}" for lg, ph in file_moves)
    return (
        f"RESTORE DATABASE {identifier(database)} FROM DISK = {literal(backup_path)} "
        f"WITH {options}, RECOVERY, STATS = 5",
        (),
    )


def current_files(database: str) -> Statement:
    """The logical names (and types) of a database's files."""
    return (
        "SELECT name, type_desc FROM sys.master_files WHERE database_id = DB_ID(?) "
        "ORDER BY file_id",
        (database,),
    )


def rename_file(database: str, logical_name: str, new_logical_name: str) -> Statement:
    return (
        f"ALTER DATABASE {identifier(database)} MODIFY FILE "
        f"(NAME = {literal(logical_name)}, NEWNAME = {literal(new_logical_name)})",
        (),
    )


def backup(template: str, backup_path: str) -> Statement:
    """A copy-only backup of a template database (the log chain of the template is untouched)."""
    return (
        f"BACKUP DATABASE {identifier(template)} TO DISK = {literal(backup_path)} "
        "WITH COPY_ONLY, INIT, CHECKSUM, STATS = 5",
        (),
    )


def delete_backup_file(backup_path: str) -> Statement:
    """Remove the backup file a backup-and-restore clone made (only a backup file)."""
    return (f"EXEC master.sys.xp_delete_file 0, {literal(backup_path)}", ())


def copy_database(template: str, target: str) -> Statement:
    """Azure SQL Database: an asynchronous copy; poll its state until ONLINE."""
    return (f"CREATE DATABASE {identifier(target)} AS COPY OF {identifier(template)}", ())


def copy_failure(target: str) -> Statement:
    """Why an Azure SQL Database copy failed (sys.dm_database_copies in master)."""
    return (
        "SELECT c.error_code, c.error_desc FROM sys.dm_database_copies c "
        "JOIN sys.databases d ON d.database_id = c.database_id WHERE d.name = ?",
        (target,),
    )


# --- rename, delete ------------------------------------------------------------------------


def single_user(name: str) -> Statement:
    """End every session on the database and let only one in (SQL Server, not Azure)."""
    return (f"ALTER DATABASE {identifier(name)} SET SINGLE_USER WITH ROLLBACK IMMEDIATE", ())


def multi_user(name: str) -> Statement:
    return (f"ALTER DATABASE {identifier(name)} SET MULTI_USER", ())


def modify_name(old: str, new: str, *, azure: bool = False) -> Statement:
    """The rename. On SQL Server the sessions are ended again in the same batch, so nobody
    takes the single-user slot between the two."""
    rename = f"ALTER DATABASE {identifier(old)} MODIFY NAME = {identifier(new)}"
    if azure:
        return (rename, ())
    return (f"{single_user(old)[0]}; {rename}", ())


def drop(name: str, *, azure: bool = False) -> Statement:
    """Drop if it exists; on SQL Server an ONLINE database's sessions are ended first, in the
    same batch (a database left RESTORING by a crashed restore is dropped as it is), and a drop
    that fails lets everyone in again: it is left as it was."""
    dropping = f"DROP DATABASE IF EXISTS {identifier(name)}"
    if azure:
        return (dropping, ())
    return (
        f"IF DATABASEPROPERTYEX(?, 'Status') = 'ONLINE' {single_user(name)[0]}; "
        f"BEGIN TRY {dropping}; END TRY "
        f"BEGIN CATCH IF DB_ID(?) IS NOT NULL {multi_user(name)[0]}; THROW; END CATCH",
        (name, name),
    )
