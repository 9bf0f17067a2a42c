"""Which provisioner replicas are alive, for sharing the shards between them.

Each replica holds one member slot: a session-level advisory lock (group, slot) on the ODS
server, on a connection kept open for the replica's life. The group is derived from the broker
vhost, so separate deployments do not mix. Listing the held slots gives the live replicas; a
replica that dies loses its connection and so its slot. The assignment only spreads work:
safety (one operation per instance, in order) never depends on it.
"""

from __future__ import annotations

import zlib
from typing import Any
from urllib.parse import urlsplit

import psycopg

from services.rules import tsql
from services.rules.connection_strings import is_sqlserver
from services.rules.errors import PermanentError, TransientError
from services.runtime.logging import get_logger
from services.runtime.odbc import connect, connection_string
from services.runtime.ods_mssql import fetch
from services.runtime.ods_server import MEMBER_CLASS

log = get_logger(__name__)

MAX_MEMBERS = 256


def assign(shard_count: int, members: list[int], me: int) -> set[int]:
    """The shards replica `me` owns: shard k goes to the (k mod n)-th live replica by slot."""
    ordered = sorted(members)
    if me not in ordered:
        return set(range(shard_count))
    rank = ordered.index(me)
    return {k for k in range(shard_count) if k % len(ordered) == rank}


def deployment_of(rabbitmq_url: str) -> str:
    """One deployment: the services consuming the same broker vhost."""
    parts = urlsplit(rabbitmq_url)
    return f"{parts.hostname}:{parts.port or 5672}{parts.path or '/'}"


def group_key(rabbitmq_url: str) -> int:
    """The lock class of one deployment's replicas."""
    return MEMBER_CLASS + zlib.crc32(deployment_of(rabbitmq_url).encode()) % 1_000_000


class Membership:
    def __init__(self, url: str, group: int) -> None:
        self._url = url
        self._group = group
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self.slot: int | None = None

    async def join(self) -> int:
        if self._conn is not None and not self._conn.closed and self.slot is not None:
            return self.slot
        await self.leave()
        conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        for slot in range(MAX_MEMBERS):
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (self._group, slot))
            row = await cur.fetchone()
            if row and row[0]:
                self._conn, self.slot = conn, slot
                log.info("joined the provisioner replicas", member_slot=slot)
                return slot
        await conn.close()
        raise RuntimeError(f"more than {MAX_MEMBERS} provisioner replicas")

    async def members(self) -> list[int]:
        assert self._conn is not None
        cur = await self._conn.execute(
            "SELECT objid::int FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s AND objsubid = 2 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (self._group,),
        )
        return sorted(int(r[0]) for r in await cur.fetchall())  # type: ignore[call-overload]

    async def owned(self, shard_count: int) -> set[int]:
        """Rejoin if the connection was lost, then this replica's share of the shards."""
        me = await self.join()
        return assign(shard_count, await self.members(), me)

    async def leave(self) -> None:
        if self._conn is not None:
            await self._conn.close()
        self._conn, self.slot = None, None


class MssqlMembership:
    """The same member slots on SQL Server: Session-owned application locks, listed with
    APPLOCK_TEST (a slot another session holds cannot be granted)."""

    def __init__(self, url: str, group: int) -> None:
        self._dsn = connection_string(url)
        self._group = group
        self._conn: Any = None
        self.slot: int | None = None

    def _resource(self, slot: int) -> str:
        return tsql.lock_resource("m", (self._group << 16) + slot)

    async def join(self) -> int:
        if self._conn is not None and self.slot is not None:
            try:
                await fetch(self._conn, ("SELECT 1", ()))
                return self.slot
            except (PermanentError, TransientError):
                pass
        await self.leave()
        conn = await connect(self._dsn)
        for slot in range(MAX_MEMBERS):
            rows = await fetch(conn, tsql.try_applock(self._resource(slot)))
            if rows and rows[0][0] == 1:
                self._conn, self.slot = conn, slot
                log.info("joined the provisioner replicas", member_slot=slot)
                return slot
        await conn.close()
        raise RuntimeError(f"more than {MAX_MEMBERS} provisioner replicas")

    async def members(self) -> list[int]:
        assert self._conn is not None and self.slot is not None
        resources = {self._resource(k): k for k in range(MAX_MEMBERS)}
        rows = await fetch(self._conn, tsql.held_applocks(list(resources)))
        return sorted({resources[str(r[0])] for r in rows} | {self.slot})

    async def owned(self, shard_count: int) -> set[int]:
        me = await self.join()
        return assign(shard_count, await self.members(), me)

    async def leave(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            except Exception as exc:  # a connection already lost
                log.info("member connection closed with an error", error=repr(exc))
        self._conn, self.slot = None, None


def membership_for(url: str, group: int) -> Membership | MssqlMembership:
    """Member slots on the ODS server, whichever engine it runs."""
    return MssqlMembership(url, group) if is_sqlserver(url) else Membership(url, group)
