"""The contract both engines keep, on a real SQL Server (skipped without one; see conftest):
create from a real .bak and by backup and restore, rename and delete with a session open, the
marker refusing a foreign database, and the admin database's invariants on SQL Server."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from contracts.messages import (
    InstanceCreated,
    InstanceDeleted,
    InstanceDeleteFailed,
    InstanceRenamed,
    InstanceRequested,
    Message,
    Operation,
)
from services.admin_db import dialect, inbox, migrate, outbox
from services.admin_db.engine import create_admin_engine
from services.admin_db.migrate_mssql import _connect
from services.admin_db.tables import outbox as outbox_table
from services.provisioner.handler import Provisioner
from services.rules import tsql
from services.rules.marker import Marker
from services.runtime.ods_mssql import MssqlOdsServer, SqlServerOptions, fetch


class Events:
    def __init__(self) -> None:
        self.events: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.events.append(message)


def _sql(url: str, statement: str, *params: Any, database: str = "master") -> list[Any]:
    conn = _connect(url, database=database, autocommit=True)
    try:
        cur = conn.execute(statement, *params)
        rows = cur.fetchall() if cur.description else []
        while cur.nextset():
            pass
        return list(rows)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def template(server_url: str, prefix: str) -> tuple[str, str]:
    """A small template database with a table and a row, and a .bak of it on the server."""
    name = f"{prefix}template"
    _sql(server_url, f"CREATE DATABASE {tsql.identifier(name)}")
    _sql(
        server_url,
        "CREATE TABLE dbo.marker_row (x INT); INSERT INTO dbo.marker_row VALUES (42)",
        database=name,
    )
    directory = str(_sql(server_url, tsql.default_paths()[0])[0][2])
    bak = tsql.join_path(directory, f"{name}.bak")
    _sql(server_url, tsql.backup(name, bak)[0])
    return name, bak


def _cmd(operation: Operation, instance_id: int, database: str, **extra: Any) -> InstanceRequested:
    return InstanceRequested(
        job_id=uuid.uuid4(),
        instance_id=instance_id,
        operation=operation,
        database_name=database,
        **extra,
    )


def _exists(url: str, name: str) -> bool:
    return bool(_sql(url, "SELECT 1 FROM sys.databases WHERE name = ?", name))


@pytest.mark.parametrize("from_bak", [True, False], ids=["bak", "backup-and-restore"])
async def test_create_rename_delete_with_a_session_open(
    server_url: str, prefix: str, template: tuple[str, str], from_bak: bool
) -> None:
    name, bak = template
    options = SqlServerOptions(template_backups={name: bak} if from_bak else {})
    server = MssqlOdsServer(server_url, 2, options=options)
    events = Events()
    provisioner = Provisioner(server, events, worker="t", retry_attempts=3, retry_max_wait=1)
    instance = 1 if from_bak else 2
    target, renamed = f"{prefix}{instance}_a", f"{prefix}{instance}_b"

    await provisioner.handle(
        _cmd(Operation.CREATE, instance, target, database_template=name), attempt=1
    )
    assert isinstance(events.events[-1], InstanceCreated), events.events[-1]
    assert _sql(server_url, "SELECT x FROM dbo.marker_row", database=target) == [(42,)]

    session = _connect(server_url, database=target, autocommit=True)  # the ODS/API, say
    try:
        await provisioner.handle(
            _cmd(Operation.RENAME, instance, target, new_name="b", new_database_name=renamed),
            attempt=1,
        )
    finally:
        session.close()
    assert isinstance(events.events[-1], InstanceRenamed), events.events[-1]
    assert not _exists(server_url, target) and _exists(server_url, renamed)
    assert _sql(
        server_url, "SELECT user_access_desc FROM sys.databases WHERE name = ?", renamed
    ) == [("MULTI_USER",)]

    session = _connect(server_url, database=renamed, autocommit=True)
    try:
        await provisioner.handle(_cmd(Operation.DELETE, instance, renamed), attempt=1)
    finally:
        session.close()
    assert isinstance(events.events[-1], InstanceDeleted), events.events[-1]
    assert not _exists(server_url, renamed)


async def test_the_marker_refuses_a_foreign_database(server_url: str, prefix: str) -> None:
    foreign = f"{prefix}foreign"
    _sql(server_url, f"CREATE DATABASE {tsql.identifier(foreign)}")
    events = Events()
    provisioner = Provisioner(MssqlOdsServer(server_url, 1), events, worker="t", retry_attempts=1)

    await provisioner.handle(_cmd(Operation.DELETE, 9, foreign), attempt=1)

    assert isinstance(events.events[-1], InstanceDeleteFailed)
    assert _exists(server_url, foreign)


async def test_the_marker_is_an_extended_property_read_back(server_url: str, prefix: str) -> None:
    name = f"{prefix}marked"
    _sql(server_url, f"CREATE DATABASE {tsql.identifier(name)}")
    server = MssqlOdsServer(server_url, 1)
    marker = Marker(5, uuid.uuid4(), "tenant-a")
    async with server.session(5) as session:
        await session.mark(name, marker)
        info = await session.database(name)
    assert info is not None and info.marker == marker


async def test_admin_database_invariants_on_sql_server(server_url: str, prefix: str) -> None:
    admin_url = server_url.split("?")[0].rsplit("/", 1)[0] + f"/{prefix}admin"
    if "?" in server_url:
        admin_url += "?" + server_url.split("?", 1)[1]
    migrate.ensure_database(admin_url)
    migrate.create_edfi_admin_copy(admin_url)
    assert migrate.migrate(admin_url) == ["0001_edfi_im"]
    assert migrate.migrate(admin_url) == []
    engine = create_admin_engine(admin_url, pool_size=2)
    try:
        # The inbox: one message id is applied once.
        async with engine.begin() as conn:
            assert await inbox.claim(conn, "status", "m-1", "X")
        async with engine.begin() as conn:
            assert not await inbox.claim(conn, "status", "m-1", "X")
        # The outbox keeps the order rows were committed in.
        async with engine.begin() as conn:
            for k in range(3):
                await outbox.enqueue(
                    conn,
                    _cmd(Operation.DELETE, k, f"db{k}"),
                    exchange="x",
                    routing_key=str(k),
                    correlation_id=None,
                )
        async with engine.begin() as conn:
            rows = await outbox.next_rows(conn, 10)
        assert [r.routing_key for r in rows] == ["0", "1", "2"]
        # One relay at a time: a second transaction cannot take the relay's lock.
        async with engine.begin() as first, engine.begin() as second:
            assert await outbox.lead(first)
            assert not await outbox.lead(second)
        async with engine.connect() as conn:
            assert (await conn.execute(select(outbox_table.c.id))).all()
            assert dialect.is_mssql(conn)
    finally:
        await engine.dispose()
    assert f"{prefix}admin" in await _databases_named(server_url, prefix)


async def _databases_named(server_url: str, prefix: str) -> list[str]:
    server = MssqlOdsServer(server_url, 1)
    async with server.connection() as conn:
        return [str(r[0]) for r in await fetch(conn, tsql.staging_databases(prefix))]
