"""Engines for the admin database; URLs are plain libpq-style in settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar
from typing import Any, TypeVar
from urllib.parse import quote_plus

from sqlalchemy import Row, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import await_only

from services.runtime.odbc import connection_string


def with_driver(url: str, driver: str) -> str:
    """`postgresql://…` → `postgresql+<driver>://…`."""
    parsed = make_url(url)
    return parsed.set(drivername=f"{parsed.get_backend_name()}+{driver}").render_as_string(
        hide_password=False
    )


def database_identity(url: str) -> str:
    """`host:port/database` of a URL (no credentials): what names one admin database."""
    parsed = make_url(url)
    port = parsed.port or (1433 if parsed.get_backend_name() == "mssql" else 5432)
    return f"{(parsed.host or 'localhost').lower()}:{port}/{parsed.database}"


def engine_url(url: str) -> str:
    """The SQLAlchemy URL: asyncpg for PostgreSQL; aioodbc for SQL Server, with the ODBC
    connection string services/runtime/odbc.py builds (FreeTDS unless the URL names a driver)."""
    if make_url(url).get_backend_name() == "mssql":
        return "mssql+aioodbc:///?odbc_connect=" + quote_plus(connection_string(url))
    return with_driver(url, "asyncpg")


def create_admin_engine(url: str, pool_size: int = 5, *, pre_ping: bool = True) -> AsyncEngine:
    """`pre_ping`: a round trip before each checkout that finds a connection the server has
    closed (a restart) before it is used. A service whose every use of the engine is retried on
    a transient error can do without it: the failing use invalidates the pool (SQLAlchemy drops
    every older connection on a disconnect) and its retry gets a fresh connection."""
    postgres = make_url(url).get_backend_name() == "postgresql"
    engine = create_async_engine(
        engine_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        # PostgreSQL's ping is our own (below); SQLAlchemy's sends three statements.
        pool_pre_ping=pre_ping and not postgres,
        pool_recycle=1800,
    )
    if pre_ping and postgres:
        event.listen(engine.sync_engine.pool, "checkout", _ping_postgres)
    return engine


def _ping_postgres(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """The pre-ping on PostgreSQL in one round trip: `SELECT 1` in the simple protocol
    (SQLAlchemy's asyncpg ping wraps `;` in BEGIN … ROLLBACK, three round trips, so that it
    passes a transaction-mode pgbouncer; a simple query passes it too). A connection the server
    ended is thrown away and the pool checks out another (DisconnectionError: a fresh one is
    tried, up to three times); any other error is raised as it is."""
    if _UNPINGED.get():
        return
    conn = dbapi_connection.driver_connection
    try:
        await_only(conn.execute("SELECT 1"))
    except Exception as error:
        if conn.is_closed() or isinstance(error, OSError):
            raise DisconnectionError(f"a pooled connection was closed: {error}") from error
        raise


T = TypeVar("T")

# Set while `alone` (`read_all`) or `unit_of_work` checks a connection out: its work is retried
# instead of its connection pinged first.
_UNPINGED: ContextVar[bool] = ContextVar("edfi_im_unpinged", default=False)


async def read_all(
    engine: AsyncEngine, statement: Any, params: dict[str, Any] | None = None
) -> Sequence[Row[Any]]:
    """The rows of one SELECT, in autocommit, without the pre-ping: a read changes nothing, so
    one that meets a connection the server has ended (a restart) is sent once more, on a new
    connection (SQLAlchemy drops the pool's older connections at a disconnect). The round trip
    of the ping is saved on every other read."""
    return await alone(engine, statement, params)


async def alone(
    engine: AsyncEngine, statement: Any, params: dict[str, Any] | None = None
) -> Sequence[Row[Any]]:
    """One statement as its own transaction (autocommit: no BEGIN, no COMMIT, one round trip),
    without the pre-ping; its rows. Sent once more, on a new connection, when it meets a
    connection the server has ended: only for a statement that may run twice (a read, or a
    write whose second run changes nothing more and answers the same)."""

    async def run() -> Sequence[Row[Any]]:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            return (await conn.execute(statement, params)).all()

    return await _unpinged(run, safe_again=lambda: True)


async def unit_of_work(engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """`work` in one transaction, without the pre-ping. A statement that meets a connection the
    server has ended fails before COMMIT is sent, and the server keeps nothing of a transaction
    it never saw committed: the whole of `work` runs once more on a new connection. Only a
    failure of the COMMIT itself is ambiguous (it may have been applied), and is raised as it
    is. `work` must do nothing outside the transaction (whatever follows the commit belongs
    after this call)."""
    committing = False

    async def transaction() -> T:
        nonlocal committing
        committing = False
        async with engine.connect() as conn, conn.begin():
            result = await work(conn)
            committing = True  # the block's end sends COMMIT
        return result

    return await _unpinged(transaction, safe_again=lambda: not committing)


async def _unpinged(attempt: Callable[[], Awaitable[T]], *, safe_again: Callable[[], bool]) -> T:
    """`attempt` with its connection checked out without the pre-ping, made once more when it
    met a connection the server had ended and `safe_again()` says nothing of it can have
    been applied; any other error, or a second one, is raised as it is."""
    unpinged = _UNPINGED.set(True)
    try:
        try:
            return await attempt()
        except DBAPIError as exc:
            if not exc.connection_invalidated or not safe_again():
                raise
        return await attempt()
    finally:
        _UNPINGED.reset(unpinged)


@asynccontextmanager
async def begun(
    engine: AsyncEngine, first: Callable[[AsyncConnection], Awaitable[T]]
) -> AsyncIterator[tuple[AsyncConnection, T]]:
    """A transaction that stays open around the caller's block, without the pre-ping: its first
    statements (`first`) are sent once more on a new connection when they meet a connection the
    server has ended (nothing of them was committed). The block and the COMMIT after it are
    never sent again: a failure there is raised as it is. Yields the connection and what
    `first` returned."""
    for attempt in (1, 2):
        ready = False
        try:
            async with AsyncExitStack() as stack:
                unpinged = _UNPINGED.set(True)
                try:
                    conn = await stack.enter_async_context(engine.connect())
                finally:
                    _UNPINGED.reset(unpinged)  # only this checkout: not the caller's block
                await stack.enter_async_context(conn.begin())
                value = await first(conn)
                ready = True
                yield conn, value
            return
        except DBAPIError as exc:
            if ready or attempt == 2 or not exc.connection_invalidated:
                raise


@asynccontextmanager
async def single_read(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection for one SELECT, in autocommit: no BEGIN before it and no ROLLBACK
    after it (two round trips of four). One statement sees one snapshot either way."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn
