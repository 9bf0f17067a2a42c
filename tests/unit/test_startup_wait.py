"""A service started while PostgreSQL restarts waits for it: a start-up step that reaches the
ODS server through psycopg (the provisioner's replica membership) is retried on a refused
connection instead of ending the process (found by the chaos run: a provisioner restarted
during a PostgreSQL restart exited with psycopg's OperationalError)."""

from __future__ import annotations

import socket

import psycopg
import pytest

from services.rules.errors import PermanentError, TransientError
from services.runtime.startup import when_available


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_a_refused_psycopg_connection_is_waited_for() -> None:
    port = _closed_port()
    tries = 0

    async def join() -> str:
        nonlocal tries
        tries += 1
        if tries < 3:  # the server is still restarting
            await psycopg.AsyncConnection.connect(
                f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2
            )
        return "joined"

    assert await when_available(join, "join the provisioners", seconds=30) == "joined"
    assert tries == 3


async def test_sql_servers_transient_refusal_is_waited_for_and_a_permanent_one_is_not() -> None:
    tries = 0

    async def transient() -> str:
        nonlocal tries
        tries += 1
        if tries < 2:
            raise TransientError("SQL Server: login timeout expired (SQLSTATE HYT00)")
        return "ok"

    assert await when_available(transient, "reach SQL Server", seconds=30) == "ok"

    async def permanent() -> None:
        raise PermanentError("SQL Server: login failed for user 'x'")

    with pytest.raises(PermanentError):
        await when_available(permanent, "reach SQL Server", seconds=30)
