"""What differs between the admin database's two engines, in one place: PostgreSQL (asyncpg) and
SQL Server (aioodbc). Everything else in admin_db is SQLAlchemy Core that compiles for both.

| PostgreSQL                         | SQL Server                                              |
|------------------------------------|---------------------------------------------------------|
| pg_advisory_xact_lock(k)           | sp_getapplock @LockOwner = 'Transaction' (waits)         |
| pg_try_advisory_xact_lock(k)       | sp_getapplock … @LockTimeout = 0                         |
| INSERT … ON CONFLICT DO NOTHING    | INSERT … SELECT … WHERE NOT EXISTS (UPDLOCK, HOLDLOCK)   |
| now()                              | SYSDATETIMEOFFSET()                                      |
| now() - interval                   | DATEADD(second, -n, SYSDATETIMEOFFSET())                 |
| FOR UPDATE [SKIP LOCKED]           | WITH (UPDLOCK, ROWLOCK[, READPAST]) (SQLAlchemy's own)   |
| JSONB                              | nvarchar(max) (SQLAlchemy's JSON)                        |
| LISTEN/NOTIFY                      | not used: the relay and the scheduler poll on both      |

Statements built here carry the execution option `engine_specific`, so the test that compiles
every executed statement for the other dialect knows they are made per engine on purpose.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    Integer,
    bindparam,
    exists,
    func,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import functions
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.types import JSON

from services.rules import tsql

ENGINE_SPECIFIC = {"engine_specific": True}

# JSON documents: JSONB on PostgreSQL, nvarchar(max) on SQL Server.
Json = JSON().with_variant(JSONB(), "postgresql")


@compiles(functions.now, "mssql")
def _now_mssql(element: Any, compiler: SQLCompiler, **kw: Any) -> str:
    # CURRENT_TIMESTAMP (SQLAlchemy's default) is the server's local time without its offset.
    return "SYSDATETIMEOFFSET()"


class ago(functions.GenericFunction[Any]):
    """The database's current time minus `seconds` (the database's clock, as now() is)."""

    type = DateTime(timezone=True)
    inherit_cache = True
    name = "ago"

    def __init__(self, seconds: float) -> None:
        super().__init__(bindparam(None, float(seconds), type_=Float()))


@compiles(ago)
def _ago_default(element: ago, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(now() - make_interval(secs => {compiler.process(element.clauses, **kw)}))"


@compiles(ago, "mssql")
def _ago_mssql(element: ago, compiler: SQLCompiler, **kw: Any) -> str:
    # Whole seconds: DATEADD takes an int.
    seconds = compiler.process(element.clauses, **kw)
    return f"DATEADD(second, -CAST({seconds} AS int), SYSDATETIMEOFFSET())"


def locked(query: Any, table: Any, *, skip_locked: bool = False, shared: bool = False) -> Any:
    """`query` locking the rows it reads from `table` until the transaction ends: FOR UPDATE
    on PostgreSQL, the table hint on SQL Server (SQLAlchemy's mssql dialect drops FOR UPDATE).
    With `skip_locked`, rows another transaction holds are passed over (SKIP LOCKED, READPAST);
    `shared`: others may read and share-lock them, nobody may change them (FOR SHARE, HOLDLOCK)."""
    if shared:
        return query.with_for_update(read=True).with_hint(
            table, "WITH (HOLDLOCK, ROWLOCK)", "mssql"
        )
    hint = "WITH (UPDLOCK, ROWLOCK, READPAST)" if skip_locked else "WITH (UPDLOCK, ROWLOCK)"
    return query.with_for_update(skip_locked=skip_locked).with_hint(table, hint, "mssql")


def is_mssql(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "mssql"


def _applock_resource(*key: int) -> str:
    packed = 0
    for part in key:
        packed = (packed << 32) ^ (part & 0xFFFF_FFFF_FFFF_FFFF)
    return tsql.lock_resource("a", packed)


def lock_statement(dialect: str, *key: int) -> ClauseElement:
    """Wait for a lock that lasts until the transaction ends (one key, or a class and a key)."""
    if dialect == "mssql":
        sql, _ = tsql.wait_applock(_applock_resource(*key))
        return text(sql.replace("?", ":resource")).bindparams(resource=_applock_resource(*key))
    return select(func.pg_advisory_xact_lock(*key))


def try_lock_statement(dialect: str, key: int) -> ClauseElement:
    """Take a transaction lock if it is free: one row, true when taken."""
    if dialect == "mssql":
        sql, _ = tsql.try_applock(_applock_resource(key), owner="Transaction")
        return text(sql.replace("?", ":resource")).bindparams(resource=_applock_resource(key))
    return select(func.pg_try_advisory_xact_lock(key))


async def xact_lock(conn: AsyncConnection, *key: int) -> None:
    """Wait for the lock; it is released when the transaction ends."""
    await conn.execute(_statement(lock_statement, conn.dialect.name, *key))


@functools.cache
def _statement(build: Any, dialect: str, *key: int) -> Any:
    """A lock statement built once per dialect and key (a hot path only sends it)."""
    return build(dialect, *key).execution_options(**ENGINE_SPECIFIC)


async def xact_locks(conn: AsyncConnection, *keys: tuple[int, ...], then: Any = None) -> Any:
    """Wait for several transaction locks, taken in the order given: in one statement on
    PostgreSQL (one round trip; its select list is evaluated left to right), one statement
    each on SQL Server. `then`: an expression evaluated after the locks in the same statement
    (PostgreSQL only; a module-level expression, so that the statement is built once), whose
    value is returned (None without it, and on SQL Server)."""
    if conn.dialect.name == "mssql":
        for key in keys:
            await xact_lock(conn, *key)
        return None
    values = {f"k{i}_{j}": part for i, key in enumerate(keys) for j, part in enumerate(key)}
    row = (await conn.execute(_pg_locks(tuple(len(key) for key in keys), then), values)).one()
    return None if then is None else row[-1]


@functools.cache
def _pg_locks(shape: tuple[int, ...], then: Any = None) -> Any:
    """`SELECT pg_advisory_xact_lock(…), …`: one lock per entry of `shape`, each of that many
    parts (1: a bigint key; 2: a class and a key, both int), all bound parameters: built once
    per shape, so a request only binds values (no statement to build and key for the cache);
    `then` last."""
    calls = [
        func.pg_advisory_xact_lock(
            *(bindparam(f"k{i}_{j}", type_=BigInteger if n == 1 else Integer) for j in range(n))
        )
        for i, n in enumerate(shape)
    ]
    if then is not None:
        calls.append(then)
    return select(*calls).execution_options(**ENGINE_SPECIFIC)


async def try_xact_lock(conn: AsyncConnection, key: int) -> bool:
    """Take the lock if it is free; it is released when the transaction ends."""
    return bool(await conn.scalar(_statement(try_lock_statement, conn.dialect.name, key)))


def _value(value: Any, type_: Any) -> Any:
    return value if isinstance(value, ClauseElement) else literal(value, type_)


def row_where(table: Any, values: dict[str, Any], where: Any) -> tuple[list[str], Any]:
    """`values` (expressions, or plain values as literals of their column's type) as a one-row
    SELECT under `where`: the columns and source of an `INSERT … SELECT` (`from_select`) that
    inserts the row only when `where` holds."""
    columns = list(values)
    source = select(*(_value(values[c], table.c[c].type).label(c) for c in columns))
    return columns, source.where(where)


# Another table's write for a statement to carry: its CTE and the CTE's bound values.
CteWrite = tuple[Any, dict[str, Any]]


async def execute_along(
    conn: AsyncConnection, statement: Any, values: dict[str, Any], along: CteWrite | None
) -> Any:
    """`statement` and, with `along`, another write in the same statement on PostgreSQL (its
    CTE, written whether or not the statement reads it: one round trip); elsewhere that write
    on its own first (the statement the CTE wraps). The statement's result."""
    if along is None:
        return await conn.execute(statement, values)
    cte, along_values = along
    if conn.dialect.name == "postgresql":
        return await conn.execute(_carrying(statement, cte), values | along_values)
    await conn.execute(cte.element, along_values)
    return await conn.execute(statement, values)


@functools.cache
def _carrying(statement: Any, cte: Any) -> Any:
    """Built once per pair: a request only binds values."""
    return statement.add_cte(cte).execution_options(**ENGINE_SPECIFIC)


def returned_a_row(cte: Any) -> Any:
    """Whether `cte` (an INSERT … RETURNING in the same statement) returned a row."""
    return exists(select(literal(1)).select_from(cte))


def insert_if_absent(dialect: str, table: Any, values: dict[str, Any], key: list[str]) -> Any:
    """Insert the row unless one with the same `key` columns exists; the row count says which
    (1 inserted, 0 there already). Concurrent inserts of one key: one wins, the other waits
    and then finds it (PostgreSQL's unique index; SQL Server's key-range lock)."""
    if dialect == "mssql":
        absent = ~(
            exists()
            .where(*(table.c[c] == values[c] for c in key))
            .select_from(table)
            .with_hint(table, "WITH (UPDLOCK, HOLDLOCK)", "mssql")
            .correlate(None)
        )
        return insert(table).from_select(*row_where(table, values, absent))
    return pg_insert(table).values(**values).on_conflict_do_nothing()
