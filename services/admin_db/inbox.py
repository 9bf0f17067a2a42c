"""The inbox: the one module that writes `edfi_im.inbox`. A consumer records each message id
it handled in the transaction of its effects, so a redelivered message changes nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func
from sqlalchemy.ext.asyncio import AsyncConnection

from services.admin_db.dialect import ENGINE_SPECIFIC, insert_if_absent
from services.admin_db.tables import inbox


async def claim(conn: AsyncConnection, consumer: str, message_id: str, kind: str) -> bool:
    """True the first time this message id is seen by this consumer (in this transaction's
    view)."""
    values = {
        "consumer": consumer,
        "message_id": message_id,
        "message_type": kind,
        "processed_at": func.now(),
    }
    statement = insert_if_absent(
        conn.dialect.name, inbox, values, ["consumer", "message_id"]
    ).execution_options(**ENGINE_SPECIFIC)
    result = await conn.execute(statement)
    return bool(result.rowcount == 1)


async def prune(conn: AsyncConnection, cutoff: Any) -> int:
    result = await conn.execute(delete(inbox).where(inbox.c.processed_at < cutoff))
    return int(result.rowcount or 0)
