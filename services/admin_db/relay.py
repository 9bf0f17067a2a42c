"""The outbox relay: publishes each admin database's outbox rows (services/admin_db/outbox.py)
with publisher confirms, in the order they committed, and marks them sent. A batch is published
in order and its confirms are awaited together; each row is marked sent only once its own
confirm has come.

One relay publishes at a time per admin database (a transaction-level advisory lock), in outbox
id order. When the broker is away it stops and tries the unconfirmed rows again, backing off:
nothing could flow anyway. When the broker refuses one message (unroutable, nacked, not
serialisable), that row is parked (and its job fails, saying why and how to requeue it) while the
rows behind it flow: order matters only per instance, and an instance has one operation in
flight at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts.messages import InstanceRequested, MaintenanceRequested
from services.admin_db import instances, jobs, outbox
from services.admin_db.engine import begun
from services.rules.errors import PermanentError
from services.runtime.logging import get_logger
from services.runtime.metrics import (
    OUTBOX_BACKLOG,
    OUTBOX_PARKED,
    OUTBOX_PUBLISH_FAILURES,
    OUTBOX_RELAY_DELAY_SECONDS,
)
from services.runtime.publisher import ConfirmingPublisher, Outgoing
from services.runtime.settings import Settings

log = get_logger(__name__)


async def _fail_parked_job(conn: AsyncConnection, body: dict[str, object], reason: str) -> None:
    """The job whose command was parked fails, visibly (its instance too), unless it ended."""
    try:
        command: InstanceRequested | MaintenanceRequested = (
            InstanceRequested.model_validate(body)
            if "instance_id" in body
            else MaintenanceRequested.model_validate(body)
        )
    except ValueError:
        return
    instance_id = getattr(command, "instance_id", None)
    if instance_id is not None:
        await instances.lock(conn, instance_id)
    job = await jobs.lock(conn, command.job_id)
    if job is None or job.status in jobs.TERMINAL:
        return
    await jobs.fail(conn, job.id, reason)
    if isinstance(command, InstanceRequested):
        await instances.fail_operation(conn, command.instance_id, job.id, command.operation, reason)


async def relay_once(
    engine: AsyncEngine, publisher: ConfirmingPublisher, batch: int, tenant: str = "default"
) -> int:
    """Publish up to `batch` rows in order; returns how many were handled (sent or parked; 0 if
    another relay runs)."""
    # Without the pre-ping (a round trip on every create's path): the lock is sent once more
    # on a new connection if it meets one the server ended; the publishing never is.
    async with begun(engine, outbox.lead) as (conn, leading):
        if not leading:
            return 0
        rows = await outbox.next_rows(conn, batch)
        sent: list[int] = []
        stalled = 0
        handled = 0
        # The batch goes out in order and its confirms are awaited together; a row is marked
        # sent (below, in this transaction) only once its own confirm has come.
        results = await publisher.publish_all(
            [
                Outgoing(
                    exchange=row.exchange,
                    routing_key=row.routing_key,
                    body=row.body,
                    message_id=str(row.message_id),
                    message_type=row.message_type,
                    correlation_id=row.correlation_id,
                )
                for row in rows
            ]
        )
        for row, error in zip(rows, results, strict=True):
            if isinstance(error, PermanentError):
                reason = (
                    f"its command could not be published: {error}. Fix the cause, then "
                    f"`edfi-im outbox requeue {row.id}`"
                    + (f" --tenant {tenant}" if tenant != "default" else "")
                )
                await outbox.park(conn, row.id, str(error))
                await _fail_parked_job(conn, row.body, reason)
                OUTBOX_PARKED.labels(tenant).inc()
                log.error(
                    "outbox row parked: the broker refused it; the rows behind it go on",
                    outbox_id=row.id,
                    message_id=str(row.message_id),
                    error=str(error),
                )
                handled += 1
                continue
            if error is not None:
                # Not confirmed (the broker is away): tried again later. Rows of the batch
                # that were confirmed all the same are marked sent, as a parked row's
                # followers are: order matters per instance, and an instance has one
                # operation in flight at a time.
                OUTBOX_PUBLISH_FAILURES.inc()
                log.warning(
                    "outbox publish failed; will retry",
                    outbox_id=row.id,
                    message_id=str(row.message_id),
                    error=str(error),
                )
                await outbox.record_failure(conn, row.id, str(error))
                stalled += 1
                continue
            sent.append(row.id)
            handled += 1
            OUTBOX_RELAY_DELAY_SECONDS.observe(
                max(0.0, (datetime.now(UTC) - row.created_at).total_seconds())
            )
        if sent:
            await outbox.mark_sent(conn, sent)
            log.debug("outbox relayed", count=len(sent), last_id=sent[-1])
        # A short batch all handled left nothing waiting as of its SELECT: no count needed
        # (one statement fewer on every create's path); otherwise count what is left.
        drained = len(rows) < batch and not stalled
        OUTBOX_BACKLOG.labels(tenant).set(0 if drained else await outbox.backlog(conn))
    # Raised after the commit, so the rows that did go out stay marked sent.
    if stalled:
        raise RelayStalledError(
            f"published {len(sent)} of {len(rows)} rows; {stalled} not confirmed"
        )
    return handled


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
        woken = True  # the first pass relays at once: rows a stopped process left unsent
        while True:
            try:
                # Woken, the relay goes straight to its transaction (a row was just written). A
                # poll first asks, in one read without a lock, whether any row waits: an idle
                # poll is one round trip, not four (BEGIN, the lock, the SELECT, COMMIT).
                count = (
                    await relay_once(self._engine, self._publisher, self._batch, self._tenant)
                    if woken or await outbox.any_waiting(self._engine)
                    else 0
                )
                self.published += count
                backoff = self._poll
                if count == self._batch:
                    continue  # more may be waiting
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                backoff = min(self._max_backoff, backoff * 2)
                log.warning("outbox relay error; backing off", error=repr(exc), seconds=backoff)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
                woken = True
            except TimeoutError:
                woken = False
            self._wake.clear()
