"""The provisioner keeps its ODS server connections between operations (issue 18): an operation
that ended cleanly hands its connection on with none of its locks, one that failed does not hand
it on at all, and a kept connection the server has ended is never used."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from services.rules.errors import PermanentError, TransientError
from services.rules.marker import lock_key
from services.runtime.ods_server import PostgresOdsServer
from services.runtime.settings import Settings
from tests.conftest import RUN_ID
from tests.support import pg

pytestmark = pytest.mark.integration


def _scope() -> str:
    return f"tests-{RUN_ID}-{uuid.uuid4().hex[:6]}"


async def _backend_pid(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> int:
    row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
    assert row is not None
    return int(str(row[0]))


async def _lock_free(url: str, server: PostgresOdsServer, scope: str, instance_id: int) -> bool:
    """Whether another session can take the instance's lock now (then lets it go)."""
    other = PostgresOdsServer(url, clone_slots=1)
    try:
        async with other._connect() as conn:
            key = lock_key("instance", scope, instance_id)
            row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))).fetchone()
            assert row is not None
            return bool(row[0])
    finally:
        await other.close()


async def test_a_clean_operation_hands_its_connection_on_without_its_locks(
    settings: Settings,
) -> None:
    url = settings.ods_server_url
    server = PostgresOdsServer(url, clone_slots=1)
    scope = _scope()
    try:
        async with server.session(7, scope=scope) as s:
            first = await _backend_pid(s._conn)
            async with server.clone_slot():
                pass
            assert not await _lock_free(url, server, scope, 7)  # held for the whole operation
        assert await _lock_free(url, server, scope, 7)  # released when it ended
        async with server.session(8, scope=scope) as s:
            assert await _backend_pid(s._conn) == first  # the same session, kept
            row = await (
                await s._conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s",
                    (first,),
                )
            ).fetchone()
            assert row is not None
            assert int(str(row[0])) == 1  # instance 8's lock only: nothing of instance 7's
    finally:
        await server.close()


async def test_a_failed_operation_does_not_hand_its_connection_on(settings: Settings) -> None:
    server = PostgresOdsServer(settings.ods_server_url, clone_slots=1)
    scope = _scope()
    try:
        first = 0

        async def failing() -> None:
            nonlocal first
            async with server.session(7, scope=scope) as s:
                first = await _backend_pid(s._conn)
                raise PermanentError("the operation failed")

        with pytest.raises(PermanentError):
            await failing()
        async with server.session(7, scope=scope) as s:
            assert await _backend_pid(s._conn) != first
    finally:
        await server.close()


async def test_a_kept_connection_the_server_ended_is_not_trusted(settings: Settings) -> None:
    """The server ends a kept session (a restart, an administrator): the operation that meets
    it fails as transient (its retry connects anew) and no kept connection is used again."""
    server = PostgresOdsServer(settings.ods_server_url, clone_slots=1)
    scope = _scope()
    try:
        async with server.session(7, scope=scope) as s:
            first = await _backend_pid(s._conn)
        await asyncio.to_thread(pg.end_own_session, settings.ods_server_url, first)
        with pytest.raises(TransientError):
            async with server.session(7, scope=scope) as s:
                await s.database("postgres")
        async with server.session(7, scope=scope) as s:
            assert await _backend_pid(s._conn) != first
            assert await s.database("postgres") is not None
    finally:
        await server.close()


async def test_operations_at_once_keep_their_sessions_for_the_next_ones(settings: Settings) -> None:
    """A provisioner runs one operation per shard at once, each in its own session, the clones
    among them in a clone slot's: after a round of them, the next round finds every session it
    needs kept (a bulk of creates does not open and close a backend per create)."""
    shards, slots = 6, 2
    server = PostgresOdsServer(settings.ods_server_url, clone_slots=slots, operations=shards)
    scope = _scope()

    def kept() -> set[int]:
        return {conn.info.backend_pid for conn, _ in server._idle._idle}

    async def round_of_operations() -> None:
        together = asyncio.Barrier(shards)

        async def operation(instance_id: int) -> None:
            async with server.session(instance_id, scope=scope):
                await together.wait()  # all of them in hand at once
                if instance_id % 3 == 0:
                    async with server.clone_slot():
                        await asyncio.sleep(0.05)  # both slots in use at once

        await asyncio.gather(*(operation(k) for k in range(shards)))
        await server.handed_back()  # a clone slot's connection is kept in the background

    try:
        await round_of_operations()
        first = kept()
        assert len(first) == shards + slots  # every session and slot connection kept
        await round_of_operations()
        assert kept() == first  # the next round used those, and opened none
        async with await psycopg.AsyncConnection.connect(
            settings.ods_server_url, autocommit=True
        ) as admin:
            held = await (
                await admin.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = ANY(%s)",
                    (list(first),),
                )
            ).fetchone()
        assert held is not None
        assert int(str(held[0])) == 0  # no instance lock, no clone slot kept with them
    finally:
        await server.close()


def _gated_hand_back(server: PostgresOdsServer) -> asyncio.Event:
    """The server's connections are handed back only once the returned event is set."""
    gate = asyncio.Event()
    give_back = server._idle.give_back

    async def gated(conn: psycopg.AsyncConnection[tuple[object, ...]], *, clean: bool) -> None:
        await gate.wait()
        await give_back(conn, clean=clean)

    server._idle.give_back = gated  # type: ignore[method-assign]
    return gate


async def _slot_free(url: str, server: PostgresOdsServer, slot: int) -> bool:
    """Whether another session can take the clone slot's lock now (then lets it go)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as other:
        row = await (
            await other.execute("SELECT pg_try_advisory_lock(%s)", (server.slot_key(slot),))
        ).fetchone()
        await other.execute("SELECT pg_advisory_unlock_all()")
    assert row is not None
    return bool(row[0])


async def test_a_clone_slot_is_handed_back_while_its_operation_goes_on(
    settings: Settings,
) -> None:
    """Issue 18: after a clean clone, the operation's next step does not wait for the slot's
    hand-back (its lock released, its connection kept: a round trip). The slot stays taken
    until then: this process's next clone and other replicas wait for it as before."""
    url = settings.ods_server_url
    server = PostgresOdsServer(url, clone_slots=1, deployment=_scope())
    gate = _gated_hand_back(server)

    async def a_clone() -> int:
        async with server.clone_slot() as slot:
            return slot

    try:
        # Without waiting for the hand-back (gated): the block's end returns at once.
        slot = await asyncio.wait_for(a_clone(), timeout=5)
        assert not await _slot_free(url, server, slot)  # still taken, for everyone
        following = asyncio.create_task(a_clone())
        await asyncio.sleep(0.2)
        assert not following.done()  # this process's next clone waits for the slot
        gate.set()
        assert await asyncio.wait_for(following, timeout=5) == slot
        await asyncio.sleep(0.05)  # the second hand-back, in the background too
        assert await _slot_free(url, server, slot)
    finally:
        gate.set()
        await server.close()


async def test_closing_the_server_waits_for_slots_being_handed_back(settings: Settings) -> None:
    """A provisioner stopping right after a clone: its slot's connection, handed back in the
    background, is closed with the rest, not left open."""
    url = settings.ods_server_url
    server = PostgresOdsServer(url, clone_slots=1, deployment=_scope())
    gate = _gated_hand_back(server)

    async def a_clone() -> None:
        async with server.clone_slot():
            pass

    try:
        await asyncio.wait_for(a_clone(), timeout=5)
    finally:
        closing = asyncio.create_task(server.close())
    await asyncio.sleep(0.1)
    assert not closing.done()
    gate.set()
    await asyncio.wait_for(closing, timeout=5)
    assert server._idle._idle == []
