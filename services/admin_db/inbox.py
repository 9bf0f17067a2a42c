"""The inbox: the one module that writes `edfi_im.inbox`. A consumer records each message id
it handled in the transaction of its effects, so a redelivered message changes nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.admin_db.tables import inbox


async def claim(conn: AsyncConnection, consumer: str, message_id: str, kind: str) -> bool:
    """True the first time this message id is seen by this consumer (in this transaction's
    view)."""
    result = await conn.execute(
        pg_insert(inbox)
        .values(
            consumer=consumer, message_id=message_id, message_type=kind, processed_at=func.now()
        )
        .on_conflict_do_nothing()
        .returning(inbox.c.message_id)
    )
    return result.first() is not None


async def prune(conn: AsyncConnection, cutoff: Any) -> int:
    result = await conn.execute(delete(inbox).where(inbox.c.processed_at < cutoff))
    return int(result.rowcount or 0)
