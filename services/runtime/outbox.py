"""Transactional outbox: commands commit with the state change; a relay publishes them.

Order: one relay publishes at a time (a transaction-level advisory lock), in outbox id order,
and stops at the first failure, so rows are published in the order they committed. Two rows of
one instance can never commit out of order because the gateway holds the instance's row lock
while writing an operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts.messages import Envelope, message_type
from services.admin_db.tables import outbox
from services.runtime.logging import get_logger
from services.runtime.metrics import (
    OUTBOX_BACKLOG,
    OUTBOX_PUBLISH_FAILURES,
    OUTBOX_RELAY_DELAY_SECONDS,
)
from services.runtime.publisher import ConfirmingPublisher
from services.runtime.settings import Settings

log = get_logger(__name__)

# pg advisory lock key: "edfi-im outbox relay".
RELAY_LOCK_KEY = 0x0ED1F1_0B0C

# Built once: the hot paths (a request, a schedule's fire) only bind values to it.
INSERT = insert(outbox).values(created_at=func.now(), attempts=0)


async def enqueue(
    conn: AsyncConnection,
    message: Envelope,
    *,
    exchange: str,
    routing_key: str,
    correlation_id: str | None,
) -> uuid.UUID:
    """Add a message to the outbox inside the caller's transaction."""
    message_id = uuid.uuid4()
    await conn.execute(
        INSERT,
        {
            "message_id": message_id,
            "exchange": exchange,
            "routing_key": routing_key,
            "message_type": message_type(message),
            "body": message.model_dump(mode="json"),
            "correlation_id": correlation_id,
        },
    )
    return message_id


async def relay_once(
    engine: AsyncEngine, publisher: ConfirmingPublisher, batch: int, tenant: str = "default"
) -> int:
    """Publish up to `batch` unsent rows in order; returns how many (0 if another relay runs)."""
    async with engine.begin() as conn:
        leader = await conn.scalar(select(func.pg_try_advisory_xact_lock(RELAY_LOCK_KEY)))
        if not leader:
            return 0
        rows = (
            await conn.execute(
                select(outbox).where(outbox.c.sent_at.is_(None)).order_by(outbox.c.id).limit(batch)
            )
        ).all()
        sent: list[int] = []
        for row in rows:
            try:
                await publisher.publish(
                    exchange=row.exchange,
                    routing_key=row.routing_key,
                    body=row.body,
                    message_id=str(row.message_id),
                    message_type=row.message_type,
                    correlation_id=row.correlation_id,
                )
            except Exception as exc:
                OUTBOX_PUBLISH_FAILURES.inc()
                log.warning(
                    "outbox publish failed; will retry",
                    outbox_id=row.id,
                    message_id=str(row.message_id),
                    error=str(exc),
                )
                await conn.execute(
                    update(outbox)
                    .where(outbox.c.id == row.id)
                    .values(attempts=outbox.c.attempts + 1, last_error=str(exc)[:2000])
                )
                break
            sent.append(row.id)
            OUTBOX_RELAY_DELAY_SECONDS.observe(
                max(0.0, (datetime.now(UTC) - row.created_at).total_seconds())
            )
        if sent:
            await conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(sent))
                .values(sent_at=func.now(), attempts=outbox.c.attempts + 1)
            )
            log.debug("outbox relayed", count=len(sent), last_id=sent[-1])
        # What is left (the partial index on unsent rows makes the count cheap).
        left: int | None = 0
        if rows:
            left = await conn.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
            )
        OUTBOX_BACKLOG.labels(tenant).set(left or 0)
    # Raised after the commit, so the rows that did go out stay marked sent.
    if len(sent) < len(rows):
        raise RelayStalledError(f"published {len(sent)} of {len(rows)} rows")
    return len(sent)


class RelayStalledError(Exception):
    """A publish failed; the relay backs off before trying the same row again."""


class OutboxRelay:
    """Background task: relays on a poll interval, or at once when `wake()` is called."""

    def __init__(
        self,
        engine: AsyncEngine,
        publisher: ConfirmingPublisher,
        *,
        poll_interval: float,
        batch_size: int,
        max_backoff: float = 10.0,
        tenant: str | None = None,
    ) -> None:
        self._tenant = tenant or "default"
        self._engine = engine
        self._publisher = publisher
        self._poll = poll_interval
        self._batch = batch_size
        self._max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    @classmethod
    def from_settings(
        cls, engine: AsyncEngine, publisher: ConfirmingPublisher, settings: Settings
    ) -> OutboxRelay:
        return cls(
            engine,
            publisher,
            poll_interval=settings.outbox_poll_interval_seconds,
            batch_size=settings.outbox_batch_size,
            tenant=settings.tenant,
        )

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = self._poll
        while True:
            try:
                count = await relay_once(self._engine, self._publisher, self._batch, self._tenant)
                self.published += count
                backoff = self._poll
                if count == self._batch:
                    continue  # more may be waiting
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                backoff = min(self._max_backoff, backoff * 2)
                log.warning("outbox relay error; backing off", error=repr(exc), seconds=backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            self._wake.clear()
