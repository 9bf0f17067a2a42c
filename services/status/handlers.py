"""The status service's handlers: plain functions that take their dependencies (a `Status`),
so each runs alone in a test. The entry point (app.py) only turns messages into calls."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog
from faststream.rabbit import RabbitMessage
from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from contracts.messages import Message, parse_event
from services.admin_db import inbox, jobs
from services.admin_db.dbo_import import import_ods_instances
from services.admin_db.engine import single_read
from services.admin_db.tables import jobs as jobs_table
from services.admin_db.tenants import (
    TenantDatabase,
    TenantDatabases,
    UnknownTenantError,
    tenant_or_dead_letter,
)
from services.admin_db.waiting import waiting_message
from services.rules.connection_strings import ods_connection_string
from services.rules.states import is_terminal
from services.runtime import dberrors
from services.runtime.dead_letters import death_reason, letter_id
from services.runtime.logging import get_logger
from services.runtime.messaging import message_context, parse_or_dead_letter
from services.runtime.metrics import (
    EVENT_APPLY_DELAY_SECONDS,
    MESSAGES_CONSUMED,
    MESSAGES_DEAD_LETTERED,
    RETRIES,
    WRITES_REFUSED,
    job_finished,
)
from services.runtime.settings import Settings
from services.runtime.topology import DEAD_COMMANDS_QUEUE, STATUS_QUEUE
from services.status.events import ConnectionStrings, Outcome, apply_event
from services.status.recovery import (
    fail_dead_lettered,
    record_refusal,
    recover_orphans,
)

log = get_logger(__name__)
T = TypeVar("T")


@dataclass
class Status:
    """What the handlers work with, built once at start-up."""

    settings: Settings
    databases: TenantDatabases
    strings: dict[str | None, ConnectionStrings]

    @classmethod
    def build(cls, settings: Settings, databases: TenantDatabases, key: bytes) -> Status:
        # Each tenant's connection strings point at its own ODS server.
        return cls(
            settings,
            databases,
            {
                db.tenant: ConnectionStrings(
                    key, functools.partial(ods_connection_string, db.settings)
                )
                for db in databases
            },
        )


def message_key(message: RabbitMessage) -> str:
    """The inbox key: the message id, or a digest of the body for a message sent without one."""
    return message.message_id or "sha256:" + hashlib.sha256(message.body).hexdigest()


async def in_transaction(
    status: Status, db: TenantDatabase, work: Callable[[AsyncConnection], Awaitable[T]]
) -> T:
    """One transaction in a tenant's admin database, retried with backoff while it is
    unreachable (only transient errors are retried)."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(dberrors.is_transient),
        stop=stop_after_attempt(status.settings.status_retry_attempts),
        wait=wait_exponential_jitter(multiplier=0.5, max=10),
        reraise=True,
    ):
        with attempt:
            if attempt.retry_state.attempt_number > 1:
                RETRIES.labels("status transaction").inc()
                log.warning(
                    "admin database unavailable; retrying",
                    tenant=db.tenant,
                    try_number=attempt.retry_state.attempt_number,
                )
            async with db.engine.begin() as conn:
                return await work(conn)
    raise AssertionError("unreachable")


async def on_event(status: Status, message: RabbitMessage) -> None:
    """A provisioner event: applied in one transaction, or (refused) its job failed and the
    event dead-lettered."""
    event = await parse_or_dead_letter(message, parse_event, "unreadable event dead-lettered")
    if event is None:
        return
    with message_context(event, message):
        db = await tenant_or_dead_letter(status.databases, event.tenant, message)
        if db is None:
            return
        strings = status.strings[db.tenant]
        MESSAGES_CONSUMED.labels(STATUS_QUEUE).inc()
        # The ended job's type, status and times, from the transaction that ended it (counted
        # below, once it has committed; a retried transaction starts the list again).
        ended: list[Row[Any]] = []

        async def work(conn: AsyncConnection) -> Outcome:
            ended.clear()
            return await apply_event(conn, event, message_key(message), strings, ended.append)

        try:
            outcome = await in_transaction(status, db, work)
        except Exception as exc:
            if dberrors.is_transient(exc):
                raise  # still unreachable after its retries: back to the broker
            await refused(status, db, event, message, exc)
            return
        if outcome == "applied":
            EVENT_APPLY_DELAY_SECONDS.labels(type(event).__name__).observe(
                max(0.0, (datetime.now(UTC) - event.occurred_at).total_seconds())
            )
            for job in ended:
                job_finished(job.type, job.status, job.created_at, job.finished_at)
        log.debug("event processed", event_type=type(event).__name__, outcome=outcome)


async def refused(
    status: Status, db: TenantDatabase, event: Message, message: RabbitMessage, exc: Exception
) -> None:
    """Applying the event failed in a way no retry can cure (a foreign key, a unique index, a
    value too long...): its job fails now with the reason, and the event goes to the dead
    letters, from where it can be requeued once the cause is fixed. Nothing loops."""
    meaning = dberrors.describe(exc)
    WRITES_REFUSED.labels("status", dberrors.sqlstate(exc) or type(exc).__name__).inc()
    try:
        reason = await in_transaction(
            status,
            db,
            lambda conn: record_refusal(conn, event, meaning, letter_id(message.raw_message)),
        )
    except Exception as again:
        if dberrors.is_transient(again):
            raise
        log.exception("the refusal could not be recorded either", error=meaning)
        reason = None
    log.error(
        "event could not be applied; dead-lettered",
        event_type=type(event).__name__,
        reason=reason or meaning,
        job_failed=reason is not None,
    )
    MESSAGES_DEAD_LETTERED.labels("refused by the admin database").inc()
    await message.reject(requeue=False)
    if reason is not None:
        await record_finished(db, event.job_id)


async def on_dead_command(status: Status, message: RabbitMessage) -> None:
    """A copy of a dead-lettered command: its job fails, visibly (the command itself stays in
    provisioner.dead, to be requeued once the cause is fixed)."""
    MESSAGES_CONSUMED.labels(DEAD_COMMANDS_QUEUE).inc()
    why = death_reason(dict(message.headers or {}))
    try:
        data = json.loads(message.body)
        job_id, instance_id = uuid.UUID(str(data["job_id"])), int(data["instance_id"])
        db = status.databases.get(data.get("tenant"))
    except (ValueError, KeyError, TypeError, UnknownTenantError) as exc:
        log.error(
            "dead-lettered command names no job of a known tenant; nothing to fail",
            message_id=message.message_id,
            reason=why,
            error=str(exc) if isinstance(exc, UnknownTenantError) else repr(exc),
        )
        return

    async def work(conn: AsyncConnection) -> None:
        if await inbox.claim(conn, "status", f"dead:{message_key(message)}", "dead-command"):
            # The id `dead-letters list` shows it by (not FastStream's, made up when it has none).
            dead_id = letter_id(message.raw_message)
            await fail_dead_lettered(conn, job_id, instance_id, why, dead_id)

    try:
        await in_transaction(status, db, work)
    except Exception as exc:
        if dberrors.is_transient(exc):
            raise
        WRITES_REFUSED.labels("status", dberrors.sqlstate(exc) or type(exc).__name__).inc()
        log.error(
            "could not fail the job of a dead-lettered command",
            job_id=str(job_id),
            error=dberrors.describe(exc),
        )
        await message.reject(requeue=False)
        return
    await record_finished(db, job_id)


async def record_finished(db: TenantDatabase, job_id: uuid.UUID) -> None:
    """Count a job that has just ended (read after the commit: a retried transaction is not
    counted twice)."""
    j = jobs_table.c
    try:
        async with single_read(db.engine) as conn:
            job = (
                await conn.execute(
                    select(j.type, j.status, j.created_at, j.finished_at).where(j.id == job_id)
                )
            ).first()
    except Exception as exc:  # metrics never fail a message
        log.warning("could not read a finished job for the metrics", error=repr(exc))
        return
    if job is not None and is_terminal(job.status):
        job_finished(job.type, job.status, job.created_at, job.finished_at)


async def sweep(status: Status, db: TenantDatabase) -> bool:
    """One sweep of a tenant's jobs: orphans re-driven, failed or recorded as fact; waiting
    jobs told why. True when something was re-driven (the relay is woken)."""
    strings = status.strings[db.tenant]
    settings = status.settings

    async def apply_fact(conn: AsyncConnection, fact: Message) -> object:
        return await apply_event(conn, fact, f"fact:{fact.job_id}", strings)

    handled = await in_transaction(
        status,
        db,
        lambda conn: recover_orphans(
            conn,
            threshold_seconds=settings.orphan_threshold_seconds,
            max_recoveries=settings.max_recoveries,
            apply_fact=apply_fact,
        ),
    )
    await in_transaction(
        status,
        db,
        lambda conn: jobs.flag_waiting(
            conn,
            threshold_seconds=settings.orphan_threshold_seconds,
            message=waiting_message(db.tenant),
        ),
    )
    return bool(handled)


async def keep_sweeping(status: Status, db: TenantDatabase) -> None:
    """Sweep every EDFI_IM_ORPHAN_CHECK_INTERVAL_SECONDS, for ever (a background task)."""
    if db.tenant is not None:  # this task's own context: its log lines
        structlog.contextvars.bind_contextvars(tenant=db.tenant)
    while True:
        try:
            if await sweep(status, db):
                db.relay.wake()
        except Exception as exc:
            log.warning("orphan sweep failed; will try again", tenant=db.tenant, error=repr(exc))
        await asyncio.sleep(status.settings.orphan_check_interval_seconds)


async def start_up_sync(db: TenantDatabase, key: bytes) -> list[int]:
    """Seed 001's start-up sync: dbo rows other tools made become instances here."""
    return await import_ods_instances(db.engine, key, db.settings)
