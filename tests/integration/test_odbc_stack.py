"""Level 3 of SQL Server's verification: the real client stack this project installs (unixODBC,
FreeTDS's ODBC driver, pyodbc under aioodbc), with no SQL Server: the driver is found from the
connection string this system builds and reaches the host and port it names; a refused and a
dropped connection come out as transient errors (retried), for the ODS server and for the admin
database alike; connections run in autocommit with no command time-out (checked on a real
driver manager with SQLite's ODBC driver, the one ODBC database that runs here)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.admin_db.engine import create_admin_engine
from services.rules.errors import TransientError
from services.runtime import dberrors, odbc
from services.runtime.ods_mssql import MssqlOdsServer


def _installed(driver: str) -> bool:
    import pyodbc

    return driver in pyodbc.drivers()


# Skipped (never passed) on a machine without the packages; CI installs them, so there a
# missing driver fails instead.
pytestmark = pytest.mark.skipif(
    not _installed("FreeTDS") and not os.environ.get("CI"),
    reason="unixODBC with FreeTDS is not installed (.ci/run installs it)",
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_refused_connection_is_transient() -> None:
    url = f"mssql://sa:secret@127.0.0.1:{_closed_port()}/master"
    with pytest.raises(TransientError, match=r"08S01|08001"):
        await odbc.connect(odbc.connection_string(url))


async def test_a_dropped_connection_is_transient_and_reached_the_named_port() -> None:
    received: list[bytes] = []

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(8))
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TransientError):
            await odbc.connect(odbc.connection_string(f"mssql://sa:x@127.0.0.1:{port}/master"))
    finally:
        server.close()
        await server.wait_closed()
    # FreeTDS opened TCP to the port of the URL and began a TDS login (PRELOGIN, type 0x12).
    assert received and received[0][:1] == b"\x12"


async def test_the_ods_server_session_retries_a_server_that_is_not_there() -> None:
    server = MssqlOdsServer(f"mssql://sa:x@127.0.0.1:{_closed_port()}/master", 1)
    with pytest.raises(TransientError):
        async with server.session(1):
            pass


async def test_the_admin_engine_on_aioodbc_classifies_a_refused_connection_as_transient() -> None:
    engine = create_admin_engine(f"mssql://sa:x@127.0.0.1:{_closed_port()}/EdFi_Admin")
    try:
        with pytest.raises(DBAPIError) as caught:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    assert engine.dialect.driver == "aioodbc"
    assert dberrors.is_transient(caught.value)
    assert "08" in (dberrors.sqlstate(caught.value) or "")


@pytest.mark.skipif(
    not _installed("SQLite3") and not os.environ.get("CI"),
    reason="SQLite's ODBC driver is not installed (.ci/run installs it)",
)
async def test_connections_are_in_autocommit_without_a_command_timeout(tmp_path: Path) -> None:
    conn = await odbc.connect(f"DRIVER={{SQLite3}};Database={tmp_path / 'x.db'}")
    try:
        assert conn.autocommit is True
        assert conn._conn.timeout == 0
        async with conn.cursor() as cur:
            await cur.execute("CREATE TABLE t (x INT)")
        # Autocommit: another connection sees the table at once, with nothing committed.
        other = await odbc.connect(f"DRIVER={{SQLite3}};Database={tmp_path / 'x.db'}")
        try:
            async with other.cursor() as cur:
                await cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                assert [r[0] for r in await cur.fetchall()] == ["t"]
        finally:
            await other.close()
    finally:
        await conn.close()
