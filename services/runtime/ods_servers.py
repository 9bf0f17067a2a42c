"""The ODS server of a URL, whichever engine it runs: PostgreSQL (`postgresql://`) or SQL Server
and Azure SQL Database (`mssql://`). The one place that chooses between them."""

from __future__ import annotations

import asyncio

import psycopg

from services.rules import tsql
from services.rules.connection_strings import is_sqlserver
from services.rules.errors import TransientError
from services.rules.marker import Marker
from services.runtime.ods_mssql import MssqlOdsServer, SqlServerOptions, fetch
from services.runtime.ods_server import DatabaseFacts, PostgresOdsServer
from services.runtime.ods_server import database_facts as postgres_facts
from services.runtime.settings import Settings

OdsServerEngine = PostgresOdsServer | MssqlOdsServer


def sqlserver_options(settings: Settings) -> SqlServerOptions:
    return SqlServerOptions(
        template_backups=dict(settings.sqlserver_template_backups),
        data_directory=settings.sqlserver_data_directory,
        log_directory=settings.sqlserver_log_directory,
        backup_directory=settings.sqlserver_backup_directory,
    )


def open_ods_server(
    settings: Settings, *, clone_slots: int, deployment: str, operations: int = 1
) -> OdsServerEngine:
    """The tenant's (or the deployment's) ODS server, as `settings` resolve it; `operations`:
    how many operations this process runs on it at once (connections kept between them)."""
    url = settings.ods_server_url
    if is_sqlserver(url):
        return MssqlOdsServer(
            url, clone_slots, deployment=deployment, options=sqlserver_options(settings)
        )
    return PostgresOdsServer(url, clone_slots, deployment=deployment, operations=operations)


async def server_databases(settings: Settings) -> dict[str, Marker | None]:
    """Every database on the ODS server (not the server's own, not templates), with the
    marker this system writes on its own."""
    url = settings.ods_server_url
    if is_sqlserver(url):
        return await _sqlserver_databases(settings)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
            "WHERE NOT datistemplate"
        )
        rows = await cur.fetchall()
    return {str(name): Marker.parse(None if c is None else str(c)) for name, c in rows}


async def _sqlserver_databases(settings: Settings) -> dict[str, Marker | None]:
    server = MssqlOdsServer(settings.ods_server_url, 1, options=sqlserver_options(settings))
    found: dict[str, Marker | None] = {}
    async with server.connection() as conn:
        rows = await fetch(conn, tsql.user_databases())
        azure = bool((await fetch(conn, tsql.engine_edition()))[0][0] == 5)
        for name, state in rows:
            found[str(name)] = None
            if state != "ONLINE":
                continue
            if azure:
                async with server.connection(database=str(name)) as db:
                    marks = await fetch(db, tsql.read_marker(str(name), cross_database=False))
            else:
                marks = await fetch(conn, tsql.read_marker(str(name)))
            found[str(name)] = Marker.parse(str(marks[0][0]) if marks and marks[0][0] else None)
    return found


async def database_facts(settings: Settings, name: str, seconds: float) -> DatabaseFacts | None:
    """What the ODS server says of `name` now (None: no such database); a TransientError when
    it does not answer within `seconds`."""
    url = settings.ods_server_url
    if not is_sqlserver(url):
        return await postgres_facts(url, name, seconds)

    async def read() -> DatabaseFacts | None:
        server = MssqlOdsServer(url, 1, options=sqlserver_options(settings))
        async with server.connection() as conn:
            rows = await fetch(conn, tsql.database_facts(name))
        if not rows:
            return None
        state, size, sessions = rows[0]
        return DatabaseFacts(
            online=state == "ONLINE",
            size_bytes=None if size is None else int(size),
            sessions=int(sessions or 0),
        )

    try:
        return await asyncio.wait_for(read(), seconds)
    except TimeoutError:
        raise TransientError(f"the ODS server did not answer within {seconds:g} s") from None
