"""The admin database's engine checks a pooled connection before it is used (one round trip on
PostgreSQL, services/admin_db/engine.py): a connection the server has ended (a restart, an
administrator) is replaced, and the request that checks it out never sees it."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.admin_db.engine import begun, create_admin_engine, read_all, unit_of_work
from tests.support import pg

pytestmark = pytest.mark.integration


async def _pid(engine: object) -> int:
    async with engine.begin() as conn:  # type: ignore[attr-defined]
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_pooled_connection_the_server_ended_is_replaced_before_use(
    admin_database: str,
) -> None:
    url = pg.database_url(admin_database)
    engine = create_admin_engine(url, pool_size=1)
    try:
        first = await _pid(engine)
        assert await _pid(engine) == first  # kept in the pool between uses
        pg.end_own_session(url, first)
        second = await _pid(engine)
        assert second != first
        assert await _pid(engine) == second
    finally:
        await engine.dispose()


async def test_an_error_other_than_a_closed_connection_is_not_hidden(
    admin_database: str,
) -> None:
    """A statement the server refuses still fails as itself (the ping only replaces closed
    connections), and the pool goes on serving."""
    engine = create_admin_engine(pg.database_url(admin_database), pool_size=1)
    try:
        with pytest.raises(Exception, match="division by zero"):
            async with engine.begin() as conn:
                await conn.execute(text("SELECT 1 / 0"))
        assert await _pid(engine) > 0
    finally:
        await engine.dispose()


async def test_a_read_meeting_a_connection_the_server_ended_is_sent_again(
    admin_database: str,
) -> None:
    """Reads skip the ping (`read_all`): the one that meets the ended connection is sent once
    more on a new one, and answers as if nothing had happened."""
    url = pg.database_url(admin_database)
    engine = create_admin_engine(url, pool_size=1)
    pid = text("SELECT pg_backend_pid()")
    try:
        (first,) = (await read_all(engine, pid))[0]
        pg.end_own_session(url, first)
        (second,) = (await read_all(engine, pid))[0]
        assert second != first
        with pytest.raises(Exception, match="division by zero"):  # not a disconnect: as is
            await read_all(engine, text("SELECT 1 / 0"))
        assert (await read_all(engine, text("SELECT CAST(:v AS integer) AS v"), {"v": 7}))[0].v == 7
    finally:
        await engine.dispose()


async def test_a_unit_of_work_meeting_a_connection_the_server_ended_runs_once_more(
    admin_database: str,
) -> None:
    """Accepts skip the ping (`unit_of_work`): a transaction whose statement meets the ended
    connection never reached COMMIT, so it runs again on a new connection and is kept once."""
    url = pg.database_url(admin_database)
    table = "uow_" + uuid.uuid4().hex[:8]
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE TABLE {table} (pid integer NOT NULL)")
    engine = create_admin_engine(url, pool_size=1)

    async def work(conn: AsyncConnection) -> int:
        pid = int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        await conn.execute(text(f"INSERT INTO {table} VALUES (:pid)"), {"pid": pid})
        return pid

    try:
        first = await unit_of_work(engine, work)
        pg.end_own_session(url, first)
        second = await unit_of_work(engine, work)
        assert second != first
        with pytest.raises(Exception, match="division by zero"):  # not a disconnect: as is
            await unit_of_work(engine, lambda conn: conn.execute(text("SELECT 1 / 0")))
        with psycopg.connect(url, autocommit=True) as admin:
            kept = admin.execute(f"SELECT pid FROM {table} ORDER BY pid").fetchall()
            admin.execute(f"DROP TABLE {table}")
        assert sorted(kept) == sorted([(first,), (second,)])
    finally:
        await engine.dispose()


async def test_a_transaction_begun_on_a_connection_the_server_ended_starts_again(
    admin_database: str,
) -> None:
    """The provisioner's fence skips the ping (`begun`): its first statement meets the ended
    connection, so the transaction starts again on a new one; a failure in the caller's block
    is never retried (it is raised, and nothing of the transaction is kept)."""
    url = pg.database_url(admin_database)
    table = "begun_" + uuid.uuid4().hex[:8]
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE TABLE {table} (pid integer NOT NULL)")
    engine = create_admin_engine(url, pool_size=1)
    firsts = 0

    async def first(conn: AsyncConnection) -> int:
        nonlocal firsts
        firsts += 1
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())

    try:
        async with begun(engine, first) as (conn, pid):
            await conn.execute(text(f"INSERT INTO {table} VALUES (:pid)"), {"pid": pid})
        pg.end_own_session(url, pid)
        firsts = 0
        async with begun(engine, first) as (conn, again):
            await conn.execute(text(f"INSERT INTO {table} VALUES (:pid)"), {"pid": again})
        assert again != pid
        assert firsts == 2  # the ended connection's try, then the new one's
        firsts = 0

        async def failing_block() -> None:
            async with begun(engine, first) as (conn, _):
                await conn.execute(text(f"INSERT INTO {table} VALUES (0)"))
                await conn.execute(text("SELECT 1 / 0"))

        with pytest.raises(Exception, match="division by zero"):
            await failing_block()
        assert firsts == 1  # the block's failure: not sent again
        with psycopg.connect(url, autocommit=True) as admin:
            kept = admin.execute(f"SELECT pid FROM {table} ORDER BY pid").fetchall()
            admin.execute(f"DROP TABLE {table}")
        assert sorted(kept) == sorted([(pid,), (again,)])
    finally:
        await engine.dispose()
