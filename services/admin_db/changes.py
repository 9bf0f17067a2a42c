"""The change feed: committed changes of jobs and instances, numbered in commit order (written by
the triggers of migration 0012_changes.sql, whoever changes the rows), read here; a NOTIFY on
`CHANNEL` follows each commit that wrote one."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from sqlalchemy import Integer, bindparam, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.admin_db.dialect import ENGINE_SPECIFIC
from services.admin_db.engine import read_all
from services.admin_db.tables import changes, jobs

CHANNEL = "edfi_im_changes"
JOB = "job"
INSTANCE = "instance"


@dataclass(frozen=True)
class Change:
    """One committed change: the row's state (its columns, as JSON) after that commit."""

    id: int
    kind: str  # JOB | INSTANCE
    entity_id: str
    body: dict[str, Any]


def _change(row: Any) -> Change:
    return Change(id=row.id, kind=row.kind, entity_id=row.entity_id, body=row.body)


# The number of the newest change (0 when there is none).
_NEWEST = func.coalesce(func.max(changes.c.id), 0)
_LATEST = select(_NEWEST)


async def latest(conn: AsyncConnection) -> int:
    """The number of the newest change (0 when there is none)."""
    return int(await conn.scalar(_LATEST) or 0)


async def oldest(conn: AsyncConnection) -> int | None:
    """The number of the oldest change still kept (None when there is none)."""
    value = await conn.scalar(select(func.min(changes.c.id)))
    return None if value is None else int(value)


async def after(
    conn: AsyncConnection, cursor: int, limit: int, entity_id: str | None = None
) -> list[Change]:
    """Changes after `cursor`, oldest first (only one job's or instance's, if given)."""
    values: dict[str, Any] = {"p_cursor": cursor, "p_limit": limit}
    if entity_id is not None:
        values["p_entity_id"] = entity_id
    rows = (await conn.execute(_after(entity_id is not None), values)).all()
    return [_change(r) for r in rows]


@functools.cache
def _after(of_one: bool) -> Any:
    """Built once (bound values): the gateway reads at every commit's NOTIFY."""
    c = changes.c
    query = (
        select(changes)
        .where(c.id > bindparam("p_cursor", type_=c.id.type))
        .order_by(c.id)
        .limit(bindparam("p_limit", type_=Integer))
    )
    if of_one:
        query = query.where(c.entity_id == bindparam("p_entity_id", type_=c.entity_id.type))
    return query


async def history(conn: AsyncConnection, entity_id: str, limit: int) -> list[tuple[Any, Change]]:
    """(commit time, change) of one job or instance, oldest first, as far as they are kept."""
    rows = (
        await conn.execute(
            select(changes)
            .where(changes.c.entity_id == entity_id)
            .order_by(changes.c.id.desc())
            .limit(limit)
        )
    ).all()
    return [(r.created_at, _change(r)) for r in reversed(rows)]


async def job_with_cursor(engine: AsyncEngine, job_id: Any) -> tuple[Any, int]:
    """A job's row (None when there is no such job) and the newest change number, from one
    snapshot: every change after that number is newer than the row. One statement in
    autocommit (its one snapshot), without the pre-ping (`read_all`): a stream's first read."""
    row = (await read_all(engine, _job_with_cursor(), {"p_job_id": job_id}))[0]
    job = None if row.id is None else row
    return job, int(row.latest_change)


@functools.cache
def _job_with_cursor() -> Any:
    """Built once (bound values): the newest change number, with the job's row joined to it
    when there is one (a missing job still gives the number)."""
    newest = select(_NEWEST.label("latest_change")).subquery()
    return select(newest.c.latest_change, *jobs.c).select_from(
        newest.outerjoin(jobs, jobs.c.id == bindparam("p_job_id", type_=jobs.c.id.type))
    )


async def latest_alone(engine: AsyncEngine) -> int:
    """`latest` in one statement of its own, without the pre-ping (`read_all`)."""
    return int((await read_all(engine, _LATEST))[0][0])


async def after_alone(engine: AsyncEngine, cursor: int, limit: int) -> list[Change]:
    """`after` in one statement of its own, without the pre-ping (`read_all`): the gateway's
    feed reads at every commit's NOTIFY, on the way of every change to the streams."""
    rows = await read_all(engine, _after(False), {"p_cursor": cursor, "p_limit": limit})
    return [_change(r) for r in rows]


async def prune(engine: AsyncEngine, older_than_seconds: float) -> int:
    """Forget changes older than the retention. PostgreSQL's only, as the whole feed is (its
    triggers and NOTIFY): the gateway starts a feed on PostgreSQL admin databases only."""
    async with engine.begin() as conn:
        result = await conn.execute(
            delete(changes)
            .where(changes.c.created_at < func.now() - timedelta(seconds=older_than_seconds))
            .execution_options(**ENGINE_SPECIFIC)
        )
    return int(result.rowcount or 0)


@dataclass(frozen=True)
class Announced:
    """What a NOTIFY of the feed said: a change's number and, unless it was too large to
    carry, the change itself (0014_change_notify.sql)."""

    id: int
    change: Change | None


def announced(payload: str) -> Announced | None:
    """A NOTIFY's payload read (None: it names no change, e.g. from a trigger older than
    0014_change_notify.sql)."""
    try:
        said = json.loads(payload)
        number = int(said["id"])
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(said.get("body"), dict):
        return Announced(number, None)
    return Announced(
        number, Change(number, str(said["kind"]), str(said["entity_id"]), said["body"])
    )


async def listen(url: str, notified: Callable[[str], None]) -> asyncpg.Connection:
    """A connection of its own that calls `notified` with the payload of every NOTIFY of the
    feed (the caller closes it). `url` is the admin database's libpq-style URL."""
    conn: asyncpg.Connection = await asyncpg.connect(url.replace("+asyncpg", ""))

    def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        notified(payload)

    await conn.add_listener(CHANNEL, on_notify)
    return conn


async def closed(conn: asyncpg.Connection) -> None:
    """Close a listening connection, however it is."""
    try:
        await asyncio.wait_for(conn.close(), timeout=5)
    except Exception:  # already broken: nothing more to release
        conn.terminate()
