"""Operations on an ODS server that is SQL Server or Azure SQL Database, through aioodbc, with
the statements of services/rules/tsql.py. Every connection is in autocommit (RESTORE, BACKUP and
CREATE/ALTER/DROP DATABASE cannot run in a transaction) with no command time-out (a restore of
the Sample template outlasts Ed-Fi's 30 s default by far).

The counterparts of PostgreSQL's: a database comment → an extended property; advisory locks →
sp_getapplock (Session-owned, on the connection that runs the operation); CREATE DATABASE …
TEMPLATE → RESTORE of the template's .bak (given, or made by BACKUP), or AS COPY OF on Azure;
ALLOW_CONNECTIONS false → SINGLE_USER WITH ROLLBACK IMMEDIATE.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from services.rules import tsql
from services.rules.errors import PermanentError, TransientError
from services.rules.marker import STAGING_PREFIX, Marker, lock_key
from services.runtime.logging import get_logger
from services.runtime.odbc import classify, connect, connection_string
from services.runtime.ods_server import DatabaseInfo, OnProgress, OnWait, describe_session

log = get_logger(__name__)

AZURE_SQL_DATABASE = 5  # SERVERPROPERTY('EngineEdition')
ONLINE = "ONLINE"


@dataclass(frozen=True)
class SqlServerOptions:
    """Where a template comes from and where files go (services/runtime/settings.py)."""

    # Template database name -> a .bak on the database server's own disk. A template not named
    # here is backed up from the template database (BACKUP … COPY_ONLY) and restored.
    template_backups: Mapping[str, str] = field(default_factory=dict)
    data_directory: str | None = None
    log_directory: str | None = None
    backup_directory: str | None = None
    progress_poll_seconds: float = 5.0
    copy_poll_seconds: float = 2.0


async def run(conn: Any, statement: tsql.Statement) -> None:
    """Execute and drain every result and message: a RESTORE or BACKUP is over only once its
    last informational message (STATS) has been read."""
    sql, params = statement
    try:
        async with conn.cursor() as cur:
            await cur.execute(sql, *params)
            while await cur.nextset():
                pass
    except Exception as exc:
        raise classify(exc) from exc


async def fetch(conn: Any, statement: tsql.Statement) -> list[Any]:
    """The rows of the first result set of a batch (earlier row counts skipped)."""
    sql, params = statement
    try:
        async with conn.cursor() as cur:
            await cur.execute(sql, *params)
            while cur.description is None:
                if not await cur.nextset():
                    return []
            rows = list(await cur.fetchall())
            columns = [c[0] for c in cur.description]
            while await cur.nextset():
                pass
    except Exception as exc:
        raise classify(exc) from exc
    return [Row(columns, tuple(r)) for r in rows]


class Row(tuple[Any, ...]):
    """A result row that can also be read by column name (RESTORE FILELISTONLY's)."""

    columns: list[str]

    def __new__(cls, columns: list[str], values: tuple[Any, ...]) -> Row:
        row = super().__new__(cls, values)
        row.columns = columns
        return row

    def get(self, name: str) -> Any:
        lowered = [c.lower() for c in self.columns]
        return self[lowered.index(name.lower())]


class MssqlSession:
    """One connection holding the instance's application lock for the whole operation."""

    def __init__(self, conn: Any, server: MssqlOdsServer, scope: str = "") -> None:
        self._conn = conn
        self._server = server
        self._scope = scope

    async def also_hold(self, instance_id: int, on_wait: OnWait | None = None) -> None:
        """Hold another instance's lock too, until the session ends (a copy's source)."""
        resource = tsql.lock_resource("i", lock_key("instance", self._scope, instance_id))
        await self._server.hold(self._conn, resource, on_wait)

    @property
    def azure(self) -> bool:
        return bool(self._server.azure)

    async def database(self, name: str) -> DatabaseInfo | None:
        rows = await fetch(self._conn, tsql.database_state(name))
        if not rows:
            return None
        state = str(rows[0][1])
        if state != ONLINE:
            return DatabaseInfo(str(rows[0][0]), None, online=False)
        return DatabaseInfo(str(rows[0][0]), await self._marker(name))

    async def databases(self, names: list[str]) -> dict[str, DatabaseInfo | None]:
        """What `database` says of each name (one after the other: a marker is read per
        database)."""
        return {name: await self.database(name) for name in names}

    async def _marker(self, name: str) -> Marker | None:
        if self.azure:
            async with self._server.connection(database=name) as conn:
                rows = await fetch(conn, tsql.read_marker(name, cross_database=False))
        else:
            rows = await fetch(self._conn, tsql.read_marker(name))
        return Marker.parse(None if not rows or rows[0][0] is None else str(rows[0][0]))

    async def staging_of(
        self, tenant: str | None, instance_id: int, deployment: str | None = None
    ) -> list[str]:
        found = []
        for name, state in await fetch(self._conn, tsql.staging_databases(STAGING_PREFIX)):
            if state != ONLINE:
                continue  # a restore that never finished carries no mark yet
            marker = await self._marker(str(name))
            if marker is not None and marker.names(tenant, instance_id, deployment):
                found.append(str(name))
        return found

    async def sessions_on(self, name: str) -> str:
        try:
            rows = await fetch(self._conn, tsql.sessions_on(name))
        except (PermanentError, TransientError):
            return "unknown (VIEW SERVER STATE is needed to see them)"
        return "; ".join(describe_session(*row[:3]) for row in rows) or "none any more"

    async def clone(
        self,
        template: str,
        target: str,
        *,
        end_sessions: bool = False,
        on_progress: OnProgress | None = None,
    ) -> None:
        """`target` made from `template`: Azure's copy, or a restore of its backup. Both read
        a database that has sessions (a COPY_ONLY backup, AS COPY OF): `end_sessions` is not
        needed here and nothing of the template is ended."""
        async with self._reporting(on_progress):
            if self.azure:
                await self._copy(template, target)
                return
            backup = self._server.options.template_backups.get(template)
            made = None
            if backup is None:
                directory = (await self._server.paths(self._conn))[2]
                backup = made = tsql.join_path(directory, f"{target}.bak")
                await run(self._conn, tsql.backup(template, backup))
            try:
                await self._restore(backup, target)
            finally:
                if made is not None:
                    await self._delete_backup(made)

    async def _restore(self, backup: str, target: str) -> None:
        rows = await fetch(self._conn, tsql.file_list(backup))
        files = [tsql.BackupFile(str(r.get("LogicalName")), str(r.get("Type"))) for r in rows]
        data_dir, log_dir, _ = await self._server.paths(self._conn)
        file_moves = tsql.moves(files, target, data_dir, log_dir)
        await run(self._conn, tsql.restore(target, backup, file_moves))
        await self._name_files(target, target)

    async def _name_files(self, database: str, name: str) -> None:
        """Logical file names that say which database they are (`<name>`, `<name>_log`)."""
        if self.azure:
            return
        rows = await fetch(self._conn, tsql.current_files(database))
        data = logs = 0
        for logical, kind in rows:
            if kind == "LOG":
                logs += 1
                wanted = f"{name}_log" if logs == 1 else f"{name}_log{logs}"
            else:
                data += 1
                wanted = name if data == 1 else f"{name}_{data}"
            if str(logical) != wanted:
                await run(self._conn, tsql.rename_file(database, str(logical), wanted))

    async def _delete_backup(self, path: str) -> None:
        try:
            await run(self._conn, tsql.delete_backup_file(path))
        except (PermanentError, TransientError) as exc:
            log.warning("the template's backup file was not deleted", path=path, error=str(exc))

    async def _copy(self, template: str, target: str) -> None:
        await run(self._conn, tsql.copy_database(template, target))
        while True:
            rows = await fetch(self._conn, tsql.database_state(target))
            if not rows:
                failure = await fetch(self._conn, tsql.copy_failure(target))
                why = f": {failure[0][1]} ({failure[0][0]})" if failure else ""
                raise PermanentError(f"the copy of {template!r} to {target!r} failed{why}")
            if rows[0][1] == ONLINE:
                return
            await asyncio.sleep(self._server.options.copy_poll_seconds)

    @asynccontextmanager
    async def _reporting(self, on_progress: OnProgress | None) -> AsyncIterator[None]:
        """While the clone runs, report its percent_complete from a second connection."""
        if on_progress is None or self.azure:
            yield
            return
        spid = int((await fetch(self._conn, ("SELECT @@SPID", ())))[0][0])
        task = asyncio.create_task(self._server.watch(spid, on_progress))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def mark(self, name: str, marker: Marker) -> None:
        if self.azure:
            async with self._server.connection(database=name) as conn:
                await run(conn, tsql.write_marker(name, marker.render(), cross_database=False))
            return
        await run(self._conn, tsql.write_marker(name, marker.render()))

    async def rename(self, old: str, new: str) -> None:
        """SINGLE_USER → MODIFY NAME → MULTI_USER on whichever name exists, in a finally; then
        the logical file names follow the new name."""
        try:
            await run(self._conn, tsql.modify_name(old, new, azure=self.azure))
        finally:
            if not self.azure:
                now = new if await self.database(new) is not None else old
                await run(self._conn, tsql.multi_user(now))
        try:
            await self._name_files(new, new)
        except (PermanentError, TransientError) as exc:  # the names are for people only
            log.warning("logical file names not changed", database_name=new, error=str(exc))

    async def drop(self, name: str) -> None:
        await run(self._conn, tsql.drop(name, azure=self.azure))

    async def close_connections(self, name: str) -> None:
        """End the sessions on `name` and let no one else in (Azure SQL has no SINGLE_USER:
        the rename ends them there)."""
        if not self.azure:
            await run(self._conn, tsql.single_user(name))

    async def allow_connections(self, name: str) -> None:
        if not self.azure:
            await run(self._conn, tsql.multi_user(name))


class MssqlOdsServer:
    """The ODS server on SQL Server, reached through the database of its URL (master)."""

    def __init__(
        self,
        url: str,
        clone_slots: int,
        lock_poll_seconds: float = 0.2,
        deployment: str = "",
        options: SqlServerOptions | None = None,
    ) -> None:
        self._dsn = connection_string(url)
        self._url = url
        self._clone_slots = clone_slots
        self._lock_poll = lock_poll_seconds
        self._deployment = deployment
        self._local_slots = asyncio.Semaphore(clone_slots)
        self.options = options or SqlServerOptions()
        self.azure: bool | None = None
        self._paths: tuple[str, str, str] | None = None

    @asynccontextmanager
    async def connection(self, database: str | None = None) -> AsyncIterator[Any]:
        dsn = self._dsn if database is None else connection_string(self._url, database)
        conn = await connect(dsn)
        try:
            yield conn
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    async def paths(self, conn: Any) -> tuple[str, str, str]:
        """Data, log and backup directories: the settings', else the server's defaults."""
        if self._paths is None:
            row = (await fetch(conn, tsql.default_paths()))[0]
            o = self.options
            data = o.data_directory or row[0]
            logs = o.log_directory or row[1] or data
            backups = o.backup_directory or row[2]
            if not data or not backups:
                raise PermanentError(
                    "the SQL Server did not say where its data and backup files go: set "
                    "EDFI_IM_SQLSERVER_DATA_DIRECTORY and EDFI_IM_SQLSERVER_BACKUP_DIRECTORY"
                )
            self._paths = (str(data), str(logs), str(backups))
        return self._paths

    async def watch(self, spid: int, on_progress: OnProgress) -> None:
        """Report a session's percent_complete until cancelled (best effort)."""
        try:
            async with self.connection() as conn:
                while True:
                    await asyncio.sleep(self.options.progress_poll_seconds)
                    rows = await fetch(conn, tsql.restore_progress(spid))
                    if rows and rows[0][0] is not None:
                        await on_progress(float(rows[0][0]))
        except (PermanentError, TransientError) as exc:
            log.info("restore progress not available", error=str(exc))

    async def _edition(self, conn: Any) -> None:
        if self.azure is None:
            rows = await fetch(conn, tsql.engine_edition())
            self.azure = bool(rows) and rows[0][0] == AZURE_SQL_DATABASE

    async def _try_lock(self, conn: Any, resource: str) -> bool:
        rows = await fetch(conn, tsql.try_applock(resource))
        return bool(rows and rows[0][0] == 1)

    @asynccontextmanager
    async def session(
        self, instance_id: int, *, scope: str = "", on_wait: OnWait | None = None
    ) -> AsyncIterator[MssqlSession]:
        """A session holding the instance's application lock (Session-owned: it lasts as long
        as the connection, as PostgreSQL's session-level advisory lock does)."""
        resource = tsql.lock_resource("i", lock_key("instance", scope, instance_id))
        async with self.connection() as conn:
            await self._edition(conn)
            await self.hold(conn, resource, on_wait)
            yield MssqlSession(conn, self, scope)
            # Closing the connection releases the locks.

    async def hold(self, conn: Any, resource: str, on_wait: OnWait | None) -> None:
        """Take a Session-owned application lock, telling `on_wait` who holds it meanwhile."""
        told = None
        while not await self._try_lock(conn, resource):
            if on_wait is not None:
                holder = await self._holder(conn, resource)
                if holder != told:
                    told = holder
                    await on_wait(holder)
            await asyncio.sleep(self._lock_poll)

    async def _holder(self, conn: Any, resource: str) -> str:
        try:
            rows = await fetch(conn, tsql.lock_holder(resource))
        except (PermanentError, TransientError):
            rows = []
        return describe_session(*rows[0][:3]) if rows else "another session"

    def slot_resource(self, slot: int) -> str:
        return tsql.lock_resource("c", lock_key("clone-slot", self._deployment, slot))

    @asynccontextmanager
    async def clone_slot(self) -> AsyncIterator[int]:
        """Hold one of N server-wide clone slots (application locks), across all replicas."""
        async with self._local_slots, self.connection() as conn:
            slot = await self._acquire_slot(conn)
            try:
                yield slot
            finally:
                with contextlib.suppress(PermanentError, TransientError):
                    await run(conn, tsql.release_applock(self.slot_resource(slot)))

    async def _acquire_slot(self, conn: Any) -> int:
        delay = 0.05
        while True:
            for slot in range(self._clone_slots):
                if await self._try_lock(conn, self.slot_resource(slot)):
                    return slot
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
