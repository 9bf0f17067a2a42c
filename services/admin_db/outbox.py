"""The outbox: the one module that writes `edfi_im.outbox`. A command is added in the
transaction of the state change that asks for it; the relay (services/runtime/relay.py)
publishes the rows in order and marks them sent, or parks one the broker refuses."""

from __future__ import annotations

import functools
import uuid
from typing import Any

from sqlalchemy import (
    Integer,
    Row,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from contracts.messages import Envelope, message_type
from services.admin_db.dialect import (
    CteWrite,
    execute_along,
    returned_a_row,
    row_where,
    try_xact_lock,
)
from services.admin_db.engine import read_all
from services.admin_db.tables import outbox

# pg advisory lock key: "edfi-im outbox relay".
RELAY_LOCK_KEY = 0x0ED1F1_0B0C

# A new row's fixed values (unsent, now).
_NEW: dict[str, Any] = {"created_at": func.now(), "attempts": 0}
# Built once: the hot paths (a request, a schedule's fire) only bind values to it.
INSERT = insert(outbox).values(**_NEW)


def waiting() -> Any:
    """Rows still to publish: neither sent nor parked."""
    return outbox.c.sent_at.is_(None) & outbox.c.parked_at.is_(None)


async def enqueue(
    conn: AsyncConnection,
    message: Envelope,
    *,
    exchange: str,
    routing_key: str,
    correlation_id: str | None,
) -> uuid.UUID:
    """Add a message to the outbox inside the caller's transaction."""
    return await add(
        conn,
        message_values(
            message, exchange=exchange, routing_key=routing_key, correlation_id=correlation_id
        ),
    )


async def add(
    conn: AsyncConnection,
    values: dict[str, Any],
    *,
    along: CteWrite | None = None,
) -> uuid.UUID:
    """Add a message's row (`message_values`) inside the caller's transaction. `along`: another
    table's INSERT as a CTE and its values (jobs.new_job), sent in the same statement on
    PostgreSQL (one round trip fewer per accept), before it elsewhere."""
    await execute_along(conn, _INSERT_BOUND, values, along)
    message_id: uuid.UUID = values["o_message_id"]
    return message_id


def message_values(
    message: Envelope, *, exchange: str, routing_key: str, correlation_id: str | None
) -> dict[str, Any]:
    """A message's row, as values bound to the outbox's INSERT (`o_…`), under a new id."""
    return {
        "o_message_id": uuid.uuid4(),
        "o_exchange": exchange,
        "o_routing_key": routing_key,
        "o_message_type": message_type(message),
        "o_body": message.model_dump(mode="json"),
        "o_correlation_id": correlation_id,
    }


@functools.cache
def enqueue_with(row: Any) -> Any:
    """The outbox's INSERT as a CTE that adds the message only when `row` (another CTE, an
    INSERT … RETURNING) has returned a row: the command of a job written in the same
    statement, or none with it. Its values: `message_values`."""
    values = _OUTBOX_VALUES | _NEW
    return (
        insert(outbox)
        .from_select(*row_where(outbox, values, returned_a_row(row)))
        .cte("new_command")
    )


_OUTBOX_VALUES: dict[str, ColumnElement[Any]] = {
    "message_id": bindparam("o_message_id", type_=outbox.c.message_id.type),
    "exchange": bindparam("o_exchange", type_=outbox.c.exchange.type),
    "routing_key": bindparam("o_routing_key", type_=outbox.c.routing_key.type),
    "message_type": bindparam("o_message_type", type_=outbox.c.message_type.type),
    "body": bindparam("o_body", type_=outbox.c.body.type),
    "correlation_id": bindparam("o_correlation_id", type_=outbox.c.correlation_id.type),
}
_INSERT_BOUND = INSERT.values(**_OUTBOX_VALUES)


async def lead(conn: AsyncConnection) -> bool:
    """Whether this transaction is the one relay of this admin database that may publish now."""
    return await try_xact_lock(conn, RELAY_LOCK_KEY)


async def next_rows(conn: AsyncConnection, batch: int) -> list[Row[Any]]:
    """Up to `batch` rows still to publish, in the order they committed."""
    return list((await conn.execute(_NEXT_ROWS, {"p_batch": batch})).all())


async def mark_sent(conn: AsyncConnection, ids: list[int]) -> None:
    await conn.execute(_MARK_SENT, {"p_ids": ids})


# The relay's statements, built once (bound values): each batch only binds them.
_NEXT_ROWS = (
    select(outbox).where(waiting()).order_by(outbox.c.id).limit(bindparam("p_batch", type_=Integer))
)
_MARK_SENT = (
    update(outbox)
    .where(outbox.c.id.in_(bindparam("p_ids", expanding=True)))
    .values(sent_at=func.now(), attempts=outbox.c.attempts + 1)
)
_BACKLOG = select(func.count()).select_from(outbox).where(waiting())


async def record_failure(conn: AsyncConnection, outbox_id: int, error: str) -> None:
    """A publish that failed for a reason that is not the row's (the broker is away)."""
    await conn.execute(
        update(outbox)
        .where(outbox.c.id == outbox_id)
        .values(attempts=outbox.c.attempts + 1, last_error=error[:2000])
    )


async def park(conn: AsyncConnection, outbox_id: int, error: str) -> None:
    """A row the broker refuses (unroutable, no such exchange...): set aside, visibly, so the
    rows behind it flow; `edfi-im outbox list` shows it, `requeue` puts it back."""
    await conn.execute(
        update(outbox)
        .where(outbox.c.id == outbox_id)
        .values(parked_at=func.now(), attempts=outbox.c.attempts + 1, last_error=error[:2000])
    )


async def unpark(conn: AsyncConnection, outbox_id: int) -> Row[Any] | None:
    """A parked row back in line (after its cause was fixed); the row, or None."""
    row: Row[Any] | None = (
        await conn.execute(
            update(outbox)
            .where(outbox.c.id == outbox_id)
            .where(outbox.c.parked_at.is_not(None))
            .values(parked_at=None)
            .returning(outbox)
        )
    ).first()
    return row


async def parked(conn: AsyncConnection) -> list[Row[Any]]:
    return list(
        (
            await conn.execute(
                select(outbox).where(outbox.c.parked_at.is_not(None)).order_by(outbox.c.id)
            )
        ).all()
    )


async def any_waiting(engine: AsyncEngine) -> bool:
    """Whether a row waits to be published: one read, without a lock, a transaction or the
    pre-ping (a relay's poll; the partial index on waiting rows answers it)."""
    return bool(await read_all(engine, _ANY_WAITING))


_ANY_WAITING = select(outbox.c.id).where(waiting()).limit(1)


async def backlog(conn: AsyncConnection) -> int:
    """Rows still to publish (the partial index on them makes the count cheap)."""
    return int(await conn.scalar(_BACKLOG) or 0)


async def prune(conn: AsyncConnection, cutoff: Any) -> int:
    result = await conn.execute(
        delete(outbox).where(outbox.c.sent_at.is_not(None)).where(outbox.c.sent_at < cutoff)
    )
    return int(result.rowcount or 0)
