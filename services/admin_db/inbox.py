"""The inbox: the one module that writes `edfi_im.inbox`. A consumer records each message id
it handled in the transaction of its effects, so a redelivered message changes nothing."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import bindparam, delete, func
from sqlalchemy.ext.asyncio import AsyncConnection

from services.admin_db.dialect import ENGINE_SPECIFIC, insert_if_absent
from services.admin_db.tables import inbox


async def claim(conn: AsyncConnection, consumer: str, message_id: str, kind: str) -> bool:
    """True the first time this message id is seen by this consumer (in this transaction's
    view)."""
    result = await conn.execute(
        _claim_statement(conn.dialect.name), claim_values(consumer, message_id, kind)
    )
    return bool(result.rowcount == 1)


def claim_values(consumer: str, message_id: str, kind: str) -> dict[str, Any]:
    """The values bound to the claim (`claim`'s statement, `claimed_cte`)."""
    return {"p_consumer": consumer, "p_message_id": message_id, "p_message_type": kind}


@functools.cache
def _claim_statement(dialect: str) -> Any:
    """Built once per dialect (bound values): each event applied binds values only."""
    c = inbox.c
    values = {
        "consumer": bindparam("p_consumer", type_=c.consumer.type),
        "message_id": bindparam("p_message_id", type_=c.message_id.type),
        "message_type": bindparam("p_message_type", type_=c.message_type.type),
        "processed_at": func.now(),
    }
    return insert_if_absent(dialect, inbox, values, ["consumer", "message_id"]).execution_options(
        **ENGINE_SPECIFIC
    )


@functools.cache
def claimed_cte() -> Any:
    """PostgreSQL: the claim as a CTE for another statement to carry (its values:
    `claim_values`); it returns a row only the first time the message id is seen."""
    return _claim_statement("postgresql").returning(inbox.c.consumer).cte("claimed")


async def prune(conn: AsyncConnection, cutoff: Any) -> int:
    result = await conn.execute(delete(inbox).where(inbox.c.processed_at < cutoff))
    return int(result.rowcount or 0)
