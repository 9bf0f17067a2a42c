"""Operations on the ODS database server (PostgreSQL). Identifiers always go through psycopg's
quoting (`sql.Identifier`), never string formatting."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from services.rules.errors import PermanentError, TransientError
from services.rules.marker import STAGING_PREFIX, Marker, lock_key

# pg advisory lock class of the provisioner replicas' member slots (two-key form).
MEMBER_CLASS = 0x0ED1F3

OnWait = Callable[[str], Awaitable[None]]
# Told how far a long clone has got, in percent (SQL Server's restores report it).
OnProgress = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class DatabaseInfo:
    name: str
    marker: Marker | None
    is_template: bool = False
    # False while a SQL Server restore or copy has not finished (RESTORING, COPYING …): such a
    # database is not a clone yet. PostgreSQL's CREATE DATABASE is all or nothing.
    online: bool = True


TRANSIENT_SQLSTATES = {
    "55006",  # object_in_use: e.g. someone is connected to the template
    "55P03",  # lock_not_available
    "57P01",  # admin_shutdown: the server restarted mid-statement
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now
    "53300",  # too_many_connections
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
}


def classify(exc: BaseException) -> Exception:
    """Wrap a driver error as transient or permanent."""
    if isinstance(exc, psycopg.OperationalError) and getattr(exc, "sqlstate", None) is None:
        return TransientError(f"database server unreachable: {exc}")
    state = getattr(exc, "sqlstate", None)
    if state in TRANSIENT_SQLSTATES or (state or "").startswith("08"):
        return TransientError(f"{exc} (SQLSTATE {state})")
    return PermanentError(f"{exc}".strip() + (f" (SQLSTATE {state})" if state else ""))


class PostgresSession:
    """One connection to the ODS server that holds the instance's lock for the whole operation.

    The lock is a session-level advisory lock on the connection that runs the statements, so
    it lasts as long as the server-side work: if the worker dies mid-statement, the backend
    finishes the statement, notices the client is gone and only then releases the lock.
    """

    def __init__(
        self,
        conn: psycopg.AsyncConnection[tuple[object, ...]],
        *,
        scope: str = "",
        lock_poll_seconds: float = 0.2,
    ) -> None:
        self._conn = conn
        self._scope = scope
        self._lock_poll = lock_poll_seconds

    async def also_hold(self, instance_id: int, on_wait: OnWait | None = None) -> None:
        """Hold another instance's lock too, until the session ends (a copy holds its source's,
        so that the source is not renamed or deleted while it is read)."""
        await _hold(
            self._conn, lock_key("instance", self._scope, instance_id), self._lock_poll, on_wait
        )

    async def _run(self, statement: sql.Composable | str, params: tuple[object, ...] = ()) -> None:
        try:
            await self._conn.execute(statement, params)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise classify(exc) from exc

    async def database(self, name: str) -> DatabaseInfo | None:
        return (await self.databases([name]))[name]

    async def databases(self, names: list[str]) -> dict[str, DatabaseInfo | None]:
        """What `database` says of each name, read in one statement (one moment)."""
        try:
            cur = await self._conn.execute(
                "SELECT datname, shobj_description(oid, 'pg_database'), datistemplate "
                "FROM pg_database WHERE datname = ANY(%s)",
                (names,),
            )
            rows = await cur.fetchall()
        except psycopg.Error as exc:
            raise classify(exc) from exc
        found: dict[str, DatabaseInfo | None] = dict.fromkeys(names)
        for name, comment, is_template in rows:
            marker = Marker.parse(None if comment is None else str(comment))
            found[str(name)] = DatabaseInfo(str(name), marker, bool(is_template))
        return found

    async def staging_of(
        self, tenant: str | None, instance_id: int, deployment: str | None = None
    ) -> list[str]:
        """The staging clones marked as this tenant's instance's (left by a create that failed
        after its clone)."""
        cur = await self._conn.execute(
            "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
            "WHERE starts_with(datname, %s)",
            (STAGING_PREFIX,),
        )
        found = []
        for name, comment in await cur.fetchall():
            marker = Marker.parse(None if comment is None else str(comment))
            if marker is not None and marker.names(tenant, instance_id, deployment):
                found.append(str(name))
        return found

    async def sessions_on(self, name: str) -> str:
        """Who is connected to a database, in words (for a clone refused because of them)."""
        cur = await self._conn.execute(
            "SELECT pid, application_name, client_addr::text, backend_start FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid() ORDER BY backend_start LIMIT 5",
            (name,),
        )
        rows = await cur.fetchall()
        return "; ".join(describe_session(*row[:3]) for row in rows) or "none any more"

    async def clone(
        self,
        template: str,
        target: str,
        *,
        end_sessions: bool = False,
        on_progress: OnProgress | None = None,
    ) -> None:
        """CREATE DATABASE … TEMPLATE: PostgreSQL copies a database only while nobody is
        connected to it. With `end_sessions` (a copy whose request allowed it) the sessions on
        the template are ended just before, and again if one came back in between."""
        tries = 3 if end_sessions else 1
        for attempt in range(1, tries + 1):
            if end_sessions:
                await self.end_sessions(template)
            try:
                await self._conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(target), sql.Identifier(template)
                    )
                )
                return
            except psycopg.Error as exc:
                error = classify(exc)
                if getattr(exc, "sqlstate", None) != "55006":
                    raise error from exc
                if attempt == tries:  # someone is (still) connected to it
                    holders = await self.sessions_on(template)
                    raise type(error)(f"{error}; sessions on {template!r}: {holders}") from exc

    async def end_sessions(self, name: str) -> int:
        """End every session on `name` (its connections stay allowed); how many there were."""
        try:
            cur = await self._conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            row = await cur.fetchone()
        except psycopg.Error as exc:
            raise classify(exc) from exc
        return int(str(row[0])) if row else 0

    async def mark(self, name: str, marker: Marker) -> None:
        await self._run(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(name), sql.Literal(marker.render())
            )
        )

    async def rename(self, old: str, new: str) -> None:
        await self._run(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(old), sql.Identifier(new)
            )
        )

    async def drop(self, name: str) -> None:
        await self._run(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    async def close_connections(self, name: str) -> None:
        """Refuse new connections to `name`, then end the sessions it has."""
        await self._run(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name))
        )
        await self._run(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )

    async def allow_connections(self, name: str) -> None:
        await self._run(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(name))
        )


# Idle connections kept beyond the clone slots (each operation holds one for its instance's
# lock, and a clone one more for its slot).
IDLE_EXTRA = 2
# At most this many sessions kept for operations (beside one per clone slot), however many
# shards a provisioner runs: beyond it, an idle backend costs the server more than a new one.
KEEP_AT_MOST = 16
# An idle connection older than this is closed rather than used (servers and proxies end idle
# sessions of their own accord).
IDLE_SECONDS = 30.0


class IdleConnections:
    """Connections to the ODS server kept between operations, so that an operation does not
    pay for a new session (a backend started, authenticated) and its statements stay prepared.

    A connection is kept only after a clean end and once `pg_advisory_unlock_all()` has
    released every session lock it took (the instance's, a clone slot's): a kept connection
    holds nothing. One that failed, or whose unlock failed, is closed, as before. A worker that
    dies closes them all: the server releases their locks as it always did."""

    def __init__(self, url: str, keep: int) -> None:
        self._url = url
        self._keep = keep
        self._idle: list[tuple[psycopg.AsyncConnection[tuple[object, ...]], float]] = []

    async def take(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        now = time.monotonic()
        while self._idle:
            conn, since = self._idle.pop()
            if (
                now - since < IDLE_SECONDS
                and not conn.closed
                and conn.info.transaction_status == TransactionStatus.IDLE
            ):
                return conn
            await _close_quietly(conn)
        return await psycopg.AsyncConnection.connect(self._url, autocommit=True)

    async def give_back(
        self, conn: psycopg.AsyncConnection[tuple[object, ...]], *, clean: bool
    ) -> None:
        if clean and not conn.closed and len(self._idle) < self._keep:
            try:
                await conn.execute("SELECT pg_advisory_unlock_all()")
            except psycopg.Error:
                await _close_quietly(conn)  # closing it releases what it holds
                return
            except BaseException:
                await _close_quietly(conn)
                raise
            self._idle.append((conn, time.monotonic()))
            return
        await _close_quietly(conn)

    async def clear(self) -> None:
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await _close_quietly(conn)


async def _close_quietly(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    with contextlib.suppress(psycopg.Error, OSError):
        await conn.close()


class PostgresOdsServer:
    """The ODS server, reached through its maintenance database (never the template)."""

    def __init__(
        self,
        url: str,
        clone_slots: int,
        lock_poll_seconds: float = 0.2,
        deployment: str = "",
        operations: int = IDLE_EXTRA,
    ) -> None:
        self._url = url
        self._clone_slots = clone_slots
        self._lock_poll = lock_poll_seconds
        # Clone slots are this deployment's (another deployment on the server has its own).
        self._deployment = deployment
        # This process's own clones queue here and take a freed slot at once; the advisory
        # locks then share the slots with other replicas.
        self._local_slots = asyncio.Semaphore(clone_slots)
        # As many kept as this process uses at once: a session per operation in hand (at most
        # `operations`, its shards) and a connection per clone slot. Fewer, and a bulk of creates
        # opens and closes a backend for most of them.
        self._idle = IdleConnections(
            url, keep=clone_slots + min(max(operations, IDLE_EXTRA), KEEP_AT_MOST)
        )
        # Clone slots whose lock is being released after a clean end (`clone_slot`).
        self._handing_back: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def _connect(
        self, *, slot: bool = False
    ) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
        """A connection for one operation or one clone slot: an idle one kept from an earlier
        operation, or a new one. It goes back only after a clean end, its locks released; a
        clone slot's, after a clean end, in the background (`_handing_back`; the local slot
        released after it): the block's end does not wait for it."""
        try:
            conn = await self._idle.take()
        except psycopg.Error as exc:
            raise classify(exc) from exc
        clean = False
        try:
            yield conn
            clean = True
        except psycopg.Error as exc:
            # The server may have restarted: none of the kept connections is trusted either.
            await self._idle.clear()
            raise classify(exc) from exc
        finally:
            if clean and slot:
                task = asyncio.create_task(self._hand_back_slot(conn))
                self._handing_back.add(task)
                task.add_done_callback(self._handing_back.discard)
            else:
                await self._idle.give_back(conn, clean=clean)

    async def _hand_back_slot(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        try:
            await self._idle.give_back(conn, clean=True)
        finally:
            self._local_slots.release()

    async def handed_back(self) -> None:
        """Until the clone slots being handed back (after a clean end) are."""
        await asyncio.gather(*self._handing_back, return_exceptions=True)

    async def close(self) -> None:
        """Close the connections kept idle (once the slots being handed back are)."""
        await self.handed_back()
        await self._idle.clear()

    @asynccontextmanager
    async def session(
        self, instance_id: int, *, scope: str = "", on_wait: OnWait | None = None
    ) -> AsyncIterator[PostgresSession]:
        """A session holding the instance's lock (scoped to `scope`, the tenant's admin database:
        one operation per instance at a time). While another session holds it, `on_wait` is told
        who does (once, and again when that changes)."""
        key = lock_key("instance", scope, instance_id)
        async with self._connect() as conn:
            await _hold(conn, key, self._lock_poll, on_wait)
            yield PostgresSession(conn, scope=scope, lock_poll_seconds=self._lock_poll)
            # Closing the connection releases the locks.

    def slot_key(self, slot: int) -> int:
        return lock_key("clone-slot", self._deployment, slot)

    @asynccontextmanager
    async def clone_slot(self) -> AsyncIterator[int]:
        """Hold one of N server-wide clone slots (advisory locks), across all replicas. The
        slot's lock goes with its connection's end: `pg_advisory_unlock_all()` before the
        connection is kept, or the connection closed, and only then does the local semaphore
        let the next clone of this process try. After a clean end that hand-back runs in the
        background: the operation's next step (on its own session) does not wait for its round
        trip, and the slot stays taken until it is done."""
        await self._local_slots.acquire()
        handed_back = False
        try:
            async with self._connect(slot=True) as conn:
                yield await self._acquire_slot(conn)
                handed_back = True
        finally:
            if not handed_back:
                self._local_slots.release()

    async def _acquire_slot(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> int:
        delay = 0.05
        while True:
            for slot in range(self._clone_slots):
                cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (self.slot_key(slot),))
                row = await cur.fetchone()
                if row and row[0]:
                    return slot
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)


async def _hold(
    conn: psycopg.AsyncConnection[tuple[object, ...]],
    key: int,
    poll_seconds: float,
    on_wait: OnWait | None,
) -> None:
    """Take a session-level advisory lock, telling `on_wait` who holds it meanwhile (once, and
    again when that changes)."""
    told = None
    while True:
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
        row = await cur.fetchone()
        if row and row[0]:
            return
        if on_wait is not None:
            holder = await _lock_holder(conn, key)
            if holder != told:
                told = holder
                await on_wait(holder)
        await asyncio.sleep(poll_seconds)


@dataclass(frozen=True)
class DatabaseFacts:
    """What the ODS server says of a database at one moment."""

    online: bool  # it exists and accepts connections
    size_bytes: int | None
    sessions: int


async def database_facts(url: str, name: str, seconds: float) -> DatabaseFacts | None:
    """Size, connections allowed and sessions of `name` (None when it does not exist), read in
    one short statement; a TransientError when the server does not answer within `seconds`."""

    async def read() -> DatabaseFacts | None:
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=max(1, int(seconds + 0.999))
        ) as conn:
            await conn.execute(
                sql.SQL("SET statement_timeout = {}").format(sql.Literal(int(seconds * 1000)))
            )
            cur = await conn.execute(
                "SELECT datallowconn, CASE WHEN has_database_privilege(oid, 'CONNECT') "
                "THEN pg_database_size(oid) END, "
                "(SELECT count(*) FROM pg_stat_activity a WHERE a.datname = d.datname) "
                "FROM pg_database d WHERE datname = %s",
                (name,),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        size = None if row[1] is None else int(str(row[1]))
        return DatabaseFacts(online=bool(row[0]), size_bytes=size, sessions=int(str(row[2])))

    try:
        return await asyncio.wait_for(read(), seconds)
    except TimeoutError:
        raise TransientError(f"the ODS server did not answer within {seconds:g} s") from None
    except psycopg.Error as exc:
        raise classify(exc) from exc


def describe_session(pid: object, application: object, client: object) -> str:
    return f"pid {pid} (application {str(application or '')!r}, client {client or 'local socket'})"


async def _lock_holder(conn: psycopg.AsyncConnection[tuple[object, ...]], key: int) -> str:
    """Who holds a one-key advisory lock, in words."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    cur = await conn.execute(
        "SELECT a.pid, a.application_name, a.client_addr::text FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
        "AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        (unsigned >> 32, unsigned & 0xFFFF_FFFF),
    )
    row = await cur.fetchone()
    return "another session" if row is None else describe_session(*row)
