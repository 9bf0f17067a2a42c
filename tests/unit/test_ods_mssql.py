"""Golden T-SQL per operation: the provisioner's create (from a .bak, by backup and restore, by
Azure SQL's copy), rename and delete against a scripted SQL Server, every statement in order.
The scripted server answers as SQL Server's catalog does; nothing here proves SQL Server runs
them (tests/sqlserver/ does, where a server is given)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from contracts.messages import (
    InstanceCreated,
    InstanceDeleted,
    InstanceRenamed,
    InstanceRenameFailed,
    InstanceRequested,
    Message,
    Operation,
)
from services.provisioner.handler import Provisioner
from services.rules.marker import Marker, staging_name
from services.runtime import ods_mssql
from services.runtime.ods_mssql import MssqlOdsServer, SqlServerOptions

TEMPLATE = "EdFi_Ods_Minimal_Template"
TARGET = "EdFi_Ods_Grand_Bend"
NEW = "EdFi_Ods_O'Brien]s"
JOB = uuid.UUID("00000000-0000-0000-0000-0000000000ab")
STAGING = staging_name(JOB)
BAK = "/var/opt/mssql/backup/EdFi_Ods_Minimal_Template.bak"
URL = "mssql://sa:secret@db.example.org:1433/master"
LOCK = "SET NOCOUNT ON; DECLARE @r int; EXEC @r = sp_getapplock"


@dataclass
class Database:
    state: str = "ONLINE"
    marker: str | None = None
    files: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ScriptedServer:
    """SQL Server's answers to the statements the session sends; records each (sql, params)."""

    edition: int = 3
    databases: dict[str, Database] = field(default_factory=dict)
    log: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    connections: int = 0

    def answer(self, sql: str, params: tuple[Any, ...]) -> tuple[list[str], list[tuple[Any, ...]]]:
        self.log.append((sql, params))
        if "EngineEdition" in sql:
            return ["e"], [(self.edition,)]
        if sql.startswith(LOCK):
            return ["r"], [(1,)]
        if sql.startswith("SELECT name, state_desc, user_access_desc FROM sys.databases"):
            found = self.databases.get(params[0])
            return ["name", "state_desc", "u"], (
                [] if found is None else [(params[0], found.state, "MULTI_USER")]
            )
        if sql.startswith("SELECT CAST(value AS nvarchar(4000)) FROM ["):
            name = _names(sql)[0]
            return ["value"], [(self.databases[name].marker,)] if self.databases[
                name
            ].marker else []
        if sql.startswith("SELECT CAST(value AS nvarchar(4000)) FROM sys."):
            return ["value"], []
        if sql.startswith("IF EXISTS (SELECT 1 FROM ["):
            name = _names(sql)[0]
            self.databases[name].marker = params[2]
            return [], []
        if sql.startswith("RESTORE FILELISTONLY"):
            columns = ["LogicalName", "PhysicalName", "Type", "FileGroupName"]
            return columns, [
                ("EdFi_Ods_Minimal_Template", "C:\\x\\t.mdf", "D", "PRIMARY"),
                ("EdFi_Ods_Minimal_Template_log", "C:\\x\\t_log.ldf", "L", None),
            ]
        if "InstanceDefaultDataPath" in sql:
            return ["d", "l", "b"], [
                ("/var/opt/mssql/data/", "/var/opt/mssql/data/", "/var/opt/mssql/backup/")
            ]
        if sql.startswith("RESTORE DATABASE"):
            name = _names(sql)[0]
            self.databases[name] = Database(
                files=[
                    ("EdFi_Ods_Minimal_Template", "ROWS"),
                    ("EdFi_Ods_Minimal_Template_log", "LOG"),
                ]
            )
            return [], []
        if sql.startswith("CREATE DATABASE"):
            name = _names(sql)[0]
            self.databases[name] = Database(state="COPYING")
            return [], []
        if sql.startswith("SELECT name, type_desc FROM sys.master_files"):
            return ["name", "type_desc"], list(self.databases[params[0]].files)
        if sql.startswith("ALTER DATABASE") and "MODIFY FILE" in sql:
            name = _names(sql)[0]
            old, new = (v.replace("''", "'") for v in re.findall(r"N'((?:[^']|'')*)'", sql))
            db = self.databases[name]
            db.files = [(new if f == old else f, t) for f, t in db.files]
            return [], []
        if "MODIFY NAME" in sql:
            old, new = _names(sql)[-2:]
            if new in self.databases:
                raise FakeOdbcError("42000", "Database 'x' already exists. (1801)")
            self.databases[new] = self.databases.pop(old)
            return [], []
        if sql.startswith(("IF DATABASEPROPERTYEX", "DROP DATABASE")):
            self.databases.pop(_names(sql)[0], None)
            return [], []
        if sql == "SELECT @@SPID":
            return ["spid"], [(55,)]
        return [], []


def _names(sql: str) -> list[str]:
    """The bracketed identifiers of a statement, unescaped, in order."""
    return [m.replace("]]", "]") for m in re.findall(r"\[((?:[^\]]|\]\])*)\]", sql)]


class FakeOdbcError(Exception):
    """pyodbc's form: (SQLSTATE, message)."""


class FakeCursor:
    def __init__(self, server: ScriptedServer) -> None:
        self._server = server
        self.description: list[tuple[str]] | None = None
        self._rows: list[tuple[Any, ...]] = []

    async def __aenter__(self) -> FakeCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def execute(self, sql: str, *params: Any) -> None:
        columns, self._rows = self._server.answer(sql, params)
        self.description = [(c,) for c in columns] if columns else None

    async def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows

    async def nextset(self) -> bool:
        return False


class FakeConnection:
    def __init__(self, server: ScriptedServer) -> None:
        self._server = server

    def cursor(self) -> FakeCursor:
        return FakeCursor(self._server)

    async def close(self) -> None:
        return None


@pytest.fixture
def sqlserver(monkeypatch: pytest.MonkeyPatch) -> ScriptedServer:
    server = ScriptedServer(databases={"master": Database(), TEMPLATE: Database()})

    async def connect(dsn: str, *, autocommit: bool = True) -> FakeConnection:
        assert autocommit, "every ODS-server connection runs in autocommit"
        server.connections += 1
        return FakeConnection(server)

    monkeypatch.setattr(ods_mssql, "connect", connect)
    return server


class Events:
    def __init__(self) -> None:
        self.events: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.events.append(message)


def _provisioner(server: MssqlOdsServer, events: Events) -> Provisioner:
    return Provisioner(server, events, worker="w", retry_attempts=1, retry_max_wait=0.01)


def _create() -> InstanceRequested:
    return InstanceRequested(
        job_id=JOB,
        instance_id=7,
        operation=Operation.CREATE,
        database_name=TARGET,
        database_template=TEMPLATE,
    )


def _statements(server: ScriptedServer) -> list[str]:
    """The statements that change the server, and the reads that decide what to change."""
    return [
        sql
        for sql, _ in server.log
        if not sql.startswith(("SELECT CAST(SERVERPROPERTY('EngineEdition')", "SELECT @@SPID"))
    ]


MARK = (
    f"IF EXISTS (SELECT 1 FROM [{STAGING}].sys.extended_properties WHERE class = 0 AND name = ?) "
    f"EXEC [{STAGING}].sys.sp_updateextendedproperty @name = ?, @value = ? "
    f"ELSE EXEC [{STAGING}].sys.sp_addextendedproperty @name = ?, @value = ?"
)
STATE = "SELECT name, state_desc, user_access_desc FROM sys.databases WHERE name = ?"
LOCKED = (
    f"{LOCK} @Resource = ?, @LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = 0; "
    "SELECT CASE WHEN @r >= 0 THEN 1 ELSE 0 END"
)
FILES = "SELECT name, type_desc FROM sys.master_files WHERE database_id = DB_ID(?) ORDER BY file_id"


async def test_create_from_a_bak_on_the_server(sqlserver: ScriptedServer) -> None:
    events = Events()
    server = MssqlOdsServer(URL, 2, options=SqlServerOptions(template_backups={TEMPLATE: BAK}))

    await _provisioner(server, events).handle(_create(), attempt=1)

    assert isinstance(events.events[-1], InstanceCreated), events.events[-1]
    assert _statements(sqlserver) == [
        LOCKED,  # the instance's lock
        STATE,  # the target does not exist
        STATE,  # the template does
        f"SELECT CAST(value AS nvarchar(4000)) FROM [{TEMPLATE}].sys.extended_properties "
        "WHERE class = 0 AND name = ?",
        STATE,  # no staging clone yet
        LOCKED,  # a clone slot
        f"RESTORE FILELISTONLY FROM DISK = N'{BAK}'",
        "SELECT CAST(SERVERPROPERTY('InstanceDefaultDataPath') AS nvarchar(4000)), "
        "CAST(SERVERPROPERTY('InstanceDefaultLogPath') AS nvarchar(4000)), "
        "CAST(SERVERPROPERTY('InstanceDefaultBackupPath') AS nvarchar(4000))",
        f"RESTORE DATABASE [{STAGING}] FROM DISK = N'{BAK}' WITH "
        f"MOVE N'EdFi_Ods_Minimal_Template' TO N'/var/opt/mssql/data/{STAGING}.mdf', "
        f"MOVE N'EdFi_Ods_Minimal_Template_log' TO N'/var/opt/mssql/data/{STAGING}_log.ldf', "
        "RECOVERY, STATS = 5",
        FILES,
        f"ALTER DATABASE [{STAGING}] MODIFY FILE "
        f"(NAME = N'EdFi_Ods_Minimal_Template', NEWNAME = N'{STAGING}')",
        f"ALTER DATABASE [{STAGING}] MODIFY FILE "
        f"(NAME = N'EdFi_Ods_Minimal_Template_log', NEWNAME = N'{STAGING}_log')",
        "EXEC sp_releaseapplock @Resource = ?, @LockOwner = 'Session'",  # the slot
        MARK,
        STATE,  # the target still does not exist
        f"ALTER DATABASE [{STAGING}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; "
        f"ALTER DATABASE [{STAGING}] MODIFY NAME = [{TARGET}]",
        STATE,  # which name exists now
        f"SELECT CAST(value AS nvarchar(4000)) FROM [{TARGET}].sys.extended_properties "
        "WHERE class = 0 AND name = ?",
        f"ALTER DATABASE [{TARGET}] SET MULTI_USER",
        FILES,
        f"ALTER DATABASE [{TARGET}] MODIFY FILE (NAME = N'{STAGING}', NEWNAME = N'{TARGET}')",
        f"ALTER DATABASE [{TARGET}] MODIFY FILE "
        f"(NAME = N'{STAGING}_log', NEWNAME = N'{TARGET}_log')",
    ]
    marker = Marker.parse(sqlserver.databases[TARGET].marker)
    assert marker == Marker(7, JOB, None)
    assert set(sqlserver.databases) == {"master", TEMPLATE, TARGET}


async def test_create_by_backing_up_the_template_deletes_its_backup(
    sqlserver: ScriptedServer,
) -> None:
    events = Events()
    server = MssqlOdsServer(URL, 2)

    await _provisioner(server, events).handle(_create(), attempt=1)

    assert isinstance(events.events[-1], InstanceCreated)
    made = f"/var/opt/mssql/backup/{STAGING}.bak"
    changes = [s for s in _statements(sqlserver) if s.startswith(("BACKUP", "RESTORE", "EXEC"))]
    assert changes == [
        f"BACKUP DATABASE [{TEMPLATE}] TO DISK = N'{made}' WITH COPY_ONLY, INIT, CHECKSUM, "
        "STATS = 5",
        f"RESTORE FILELISTONLY FROM DISK = N'{made}'",
        f"RESTORE DATABASE [{STAGING}] FROM DISK = N'{made}' WITH "
        f"MOVE N'EdFi_Ods_Minimal_Template' TO N'/var/opt/mssql/data/{STAGING}.mdf', "
        f"MOVE N'EdFi_Ods_Minimal_Template_log' TO N'/var/opt/mssql/data/{STAGING}_log.ldf', "
        "RECOVERY, STATS = 5",
        f"EXEC master.sys.xp_delete_file 0, N'{made}'",
        "EXEC sp_releaseapplock @Resource = ?, @LockOwner = 'Session'",
    ]


async def test_create_on_azure_sql_copies_and_waits_until_online(
    sqlserver: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlserver.edition = 5
    polls = 0
    answer = sqlserver.answer

    def copying(sql: str, params: tuple[Any, ...]) -> tuple[list[str], list[tuple[Any, ...]]]:
        nonlocal polls
        if sql.startswith("SELECT name, state_desc") and params == (STAGING,):
            polls += 1
            if polls == 3:  # the copy is done on the second poll after it began
                sqlserver.databases[STAGING].state = "ONLINE"
        return answer(sql, params)

    monkeypatch.setattr(sqlserver, "answer", copying)
    events = Events()
    server = MssqlOdsServer(URL, 2, options=SqlServerOptions(copy_poll_seconds=0.0))

    await _provisioner(server, events).handle(_create(), attempt=1)

    assert isinstance(events.events[-1], InstanceCreated)
    statements = _statements(sqlserver)
    assert f"CREATE DATABASE [{STAGING}] AS COPY OF [{TEMPLATE}]" in statements
    assert f"ALTER DATABASE [{STAGING}] MODIFY NAME = [{TARGET}]" in statements
    assert not any("SINGLE_USER" in s or "MULTI_USER" in s or "RESTORE" in s for s in statements)
    # No three-part names on Azure SQL Database: the mark is written in the database itself.
    assert not any(".sys.extended_properties" in s for s in statements)
    assert polls >= 3


def _rename(old: str = TARGET, new: str = NEW) -> InstanceRequested:
    return InstanceRequested(
        job_id=uuid.uuid4(),
        instance_id=7,
        operation=Operation.RENAME,
        database_name=old,
        new_name="x",
        new_database_name=new,
    )


def _marked(instance_id: int = 7) -> str:
    return Marker(instance_id, uuid.uuid4()).render()


async def test_rename_single_user_modify_name_then_multi_user(sqlserver: ScriptedServer) -> None:
    sqlserver.databases[TARGET] = Database(marker=_marked(), files=[(TARGET, "ROWS")])
    events = Events()

    await _provisioner(MssqlOdsServer(URL, 2), events).handle(_rename(), attempt=1)

    assert isinstance(events.events[-1], InstanceRenamed)
    changes = [s for s in _statements(sqlserver) if s.startswith("ALTER")]
    assert changes == [
        f"ALTER DATABASE [{TARGET}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE",
        f"ALTER DATABASE [{TARGET}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; "
        f"ALTER DATABASE [{TARGET}] MODIFY NAME = [EdFi_Ods_O'Brien]]s]",
        "ALTER DATABASE [EdFi_Ods_O'Brien]]s] SET MULTI_USER",
        "ALTER DATABASE [EdFi_Ods_O'Brien]]s] MODIFY FILE "
        "(NAME = N'EdFi_Ods_Grand_Bend', NEWNAME = N'EdFi_Ods_O''Brien]s')",
        "ALTER DATABASE [EdFi_Ods_O'Brien]]s] SET MULTI_USER",
    ]
    assert NEW in sqlserver.databases


async def test_a_failed_modify_name_lets_everyone_back_into_the_old_name(
    sqlserver: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlserver.databases[TARGET] = Database(marker=_marked())
    answer = sqlserver.answer

    def refusing(sql: str, params: tuple[Any, ...]) -> tuple[list[str], list[tuple[Any, ...]]]:
        if "MODIFY NAME" in sql:
            sqlserver.log.append((sql, params))
            raise FakeOdbcError("42000", "[SQL Server]The database name is in use (1801)")
        return answer(sql, params)

    monkeypatch.setattr(sqlserver, "answer", refusing)
    events = Events()

    await _provisioner(MssqlOdsServer(URL, 2), events).handle(_rename(), attempt=1)

    assert isinstance(events.events[-1], InstanceRenameFailed)
    changes = [s for s in _statements(sqlserver) if s.startswith("ALTER")]
    assert changes[-2:] == [
        f"ALTER DATABASE [{TARGET}] SET MULTI_USER",  # the finally, on the name that exists
        f"ALTER DATABASE [{TARGET}] SET MULTI_USER",  # the handler's own, as on PostgreSQL
    ]
    assert "MODIFY NAME" in changes[-3]


async def test_delete_drops_a_database_marked_for_the_instance(sqlserver: ScriptedServer) -> None:
    sqlserver.databases[TARGET] = Database(marker=_marked())
    events = Events()
    cmd = InstanceRequested(
        job_id=uuid.uuid4(), instance_id=7, operation=Operation.DELETE, database_name=TARGET
    )

    await _provisioner(MssqlOdsServer(URL, 2), events).handle(cmd, attempt=1)

    assert isinstance(events.events[-1], InstanceDeleted)
    assert events.events[-1].dropped
    drops = [(sql, p) for sql, p in sqlserver.log if sql.startswith("IF DATABASEPROPERTYEX")]
    assert drops == [
        (
            "IF DATABASEPROPERTYEX(?, 'Status') = 'ONLINE' "
            f"ALTER DATABASE [{TARGET}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; "
            f"BEGIN TRY DROP DATABASE IF EXISTS [{TARGET}]; END TRY BEGIN CATCH IF DB_ID(?) IS "
            f"NOT NULL ALTER DATABASE [{TARGET}] SET MULTI_USER; THROW; END CATCH",
            (TARGET, TARGET),
        )
    ]
    assert TARGET not in sqlserver.databases


async def test_the_marker_refuses_a_foreign_database(sqlserver: ScriptedServer) -> None:
    sqlserver.databases[TARGET] = Database(marker=json.dumps({"managedBy": "someone else"}))
    events = Events()
    cmd = InstanceRequested(
        job_id=uuid.uuid4(), instance_id=7, operation=Operation.DELETE, database_name=TARGET
    )

    await _provisioner(MssqlOdsServer(URL, 2), events).handle(cmd, attempt=1)

    assert type(events.events[-1]).__name__ == "InstanceDeleteFailed"
    assert TARGET in sqlserver.databases
    assert not any("DROP" in sql or "ALTER" in sql for sql, _ in sqlserver.log)
