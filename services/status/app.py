"""The status service: the only writer of status transitions; also recovers orphaned jobs."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import structlog
from faststream import AckPolicy, FastStream
from faststream.asgi import AsgiFastStream
from faststream.rabbit import Channel, RabbitMessage, RabbitQueue
from faststream.rabbit.schemas import QueueType
from faststream.specification import AsyncAPI
from pydantic import WithJsonSchema
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from contracts.messages import EVENT_TYPES, OUTCOMES, InstanceRequested, Message, parse_event
from services.admin_db.dbo_import import import_ods_instances
from services.admin_db.tables import jobs
from services.rules.connection_strings import (
    ods_connection_string,
    quoting_warning,
    shared_credentials_warning,
)
from services.rules.states import is_terminal
from services.runtime import dberrors
from services.runtime.asyncapi import contract_schema, document_commands, specification
from services.runtime.logging import get_logger
from services.runtime.messaging import (
    make_broker,
    message_context,
    outbox_consumer_app,
    parse_or_dead_letter,
    tenant_or_dead_letter,
)
from services.runtime.metrics import (
    EVENT_APPLY_DELAY_SECONDS,
    MESSAGES_CONSUMED,
    MESSAGES_DEAD_LETTERED,
    RETRIES,
    WRITES_REFUSED,
    job_finished,
)
from services.runtime.publisher import ConfirmingPublisher
from services.runtime.settings import Settings
from services.runtime.startup import (
    BackgroundTasks,
    declare_topology_when_available,
    when_available,
)
from services.runtime.tenants import TenantDatabase, TenantDatabases, UnknownTenantError
from services.runtime.topology import DEAD_COMMANDS_QUEUE, STATUS_QUEUE
from services.runtime.waiting import flag_waiting_jobs
from services.runtime.watchdog import Watchdog
from services.status.apply import StatusApplier, claim_inbox
from services.status.recovery import (
    death_reason,
    fail_dead_lettered,
    record_refusal,
    recover_orphans,
)

log = get_logger(__name__)
T = TypeVar("T")


def message_key(message: RabbitMessage) -> str:
    """The inbox key: the message id, or a digest of the body for a message sent without one."""
    return message.message_id or "sha256:" + hashlib.sha256(message.body).hexdigest()


DESCRIPTION = (
    "The only writer of status transitions: applies the provisioner's events to the admin "
    "database, fails the jobs of dead-lettered commands, and re-drives orphaned jobs through "
    "its outbox."
)
EventBody = Annotated[Any, WithJsonSchema(contract_schema(*EVENT_TYPES.values()))]
CommandBody = Annotated[Any, WithJsonSchema(contract_schema(InstanceRequested))]


def asyncapi(settings: Settings) -> AsyncAPI:
    app = create_app(settings)
    return specification(app.broker, "status", DESCRIPTION)


def create_app(settings: Settings) -> FastStream | AsgiFastStream:
    key = settings.encryption_key_bytes()  # a start-up error when missing in production
    if settings.uses_development_key:
        log.warning(
            "using the public development encryption key: set "
            "ODS_CONNECTION_STRING_ENCRYPTION_KEY to the key your ODS/API uses"
        )
    for resolved in settings.tenant_settings().values():
        shared = shared_credentials_warning(resolved)
        if shared:
            log.warning("the ODS/API gets this system's own credentials", detail=shared)
        warning = quoting_warning(resolved)
        if warning:
            log.warning(
                "connection strings other Ed-Fi tools may misread",
                tenant=resolved.tenant,
                detail=warning,
            )
    broker = make_broker(settings, f"status:{os.getpid()}")
    publisher = ConfirmingPublisher(settings.rabbitmq_url)
    databases = TenantDatabases(settings, publisher)
    # Each tenant's connection strings point at its own ODS server.
    appliers = {
        db.tenant: StatusApplier(key, functools.partial(ods_connection_string, db.settings))
        for db in databases
    }
    tasks = BackgroundTasks()
    document_commands(broker, "orphaned jobs' commands, sent again through the outbox")

    async def in_transaction(
        db: TenantDatabase, work: Callable[[AsyncConnection], Awaitable[T]]
    ) -> T:
        """One transaction in a tenant's admin database, retried with backoff while it is
        unreachable."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(dberrors.is_transient),
            stop=stop_after_attempt(settings.status_retry_attempts),
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

    @broker.subscriber(
        RabbitQueue(STATUS_QUEUE, queue_type=QueueType.QUORUM, declare=False),
        channel=Channel(prefetch_count=1),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        title=STATUS_QUEUE,
        description="Progress and outcome events, applied in one transaction each",
    )
    async def on_event(body: EventBody, message: RabbitMessage) -> None:
        # `body` is FastStream's decoded copy; the contract is parsed from the raw bytes.
        event = await parse_or_dead_letter(message, parse_event, "unreadable event dead-lettered")
        if event is None:
            return
        with message_context(event, message):
            db = await tenant_or_dead_letter(databases, event.tenant, message)
            if db is None:
                return
            applier = appliers[db.tenant]
            MESSAGES_CONSUMED.labels(STATUS_QUEUE).inc()
            try:
                outcome = await in_transaction(
                    db, lambda conn: applier.apply(conn, event, message_key(message))
                )
            except Exception as exc:
                if dberrors.is_transient(exc):
                    raise  # still unreachable after its retries: back to the broker
                await refused(db, event, message, exc)
                return
            if outcome == "applied":
                EVENT_APPLY_DELAY_SECONDS.labels(type(event).__name__).observe(
                    max(0.0, (datetime.now(UTC) - event.occurred_at).total_seconds())
                )
                if type(event) in OUTCOMES:
                    await record_finished(db, event.job_id)
            log.debug("event processed", event_type=type(event).__name__, outcome=outcome)

    @broker.subscriber(
        RabbitQueue(DEAD_COMMANDS_QUEUE, queue_type=QueueType.QUORUM, declare=False),
        channel=Channel(prefetch_count=1),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        title=DEAD_COMMANDS_QUEUE,
        description="Copies of dead-lettered commands: their jobs are failed, visibly",
    )
    async def on_dead_command(body: CommandBody, message: RabbitMessage) -> None:
        MESSAGES_CONSUMED.labels(DEAD_COMMANDS_QUEUE).inc()
        why = death_reason(dict(message.headers or {}))
        try:
            data = json.loads(message.body)
            job_id, instance_id = uuid.UUID(str(data["job_id"])), int(data["instance_id"])
            db = databases.get(data.get("tenant"))
        except (ValueError, KeyError, TypeError, UnknownTenantError) as exc:
            log.error(
                "dead-lettered command names no job of a known tenant; nothing to fail",
                message_id=message.message_id,
                reason=why,
                error=str(exc) if isinstance(exc, UnknownTenantError) else repr(exc),
            )
            return

        async def work(conn: AsyncConnection) -> None:
            if await claim_inbox(conn, f"dead:{message_key(message)}", "dead-command"):
                await fail_dead_lettered(conn, job_id, instance_id, why)

        try:
            await in_transaction(db, work)
        except Exception as exc:
            if dberrors.is_transient(exc):
                raise
            # The command itself stays in provisioner.dead; this copy cannot be used.
            WRITES_REFUSED.labels("status", dberrors.sqlstate(exc) or type(exc).__name__).inc()
            log.error(
                "could not fail the job of a dead-lettered command",
                job_id=str(job_id),
                error=dberrors.describe(exc),
            )
            await message.reject(requeue=False)
            return
        await record_finished(db, job_id)

    async def refused(
        db: TenantDatabase, event: Message, message: RabbitMessage, exc: Exception
    ) -> None:
        """Applying the event failed in a way no retry can cure (a foreign key, a unique index,
        a value too long...): its job fails now with the reason, and the event goes to the dead
        letters, from where it can be requeued once the cause is fixed. Nothing loops."""
        meaning = dberrors.describe(exc)
        WRITES_REFUSED.labels("status", dberrors.sqlstate(exc) or type(exc).__name__).inc()
        try:
            reason = await in_transaction(
                db, lambda conn: record_refusal(conn, event, meaning, message.message_id)
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

    async def record_finished(db: TenantDatabase, job_id: uuid.UUID) -> None:
        """Count a job that has just ended (read after the commit: a retried transaction is
        not counted twice)."""
        try:
            async with db.engine.connect() as conn:
                job = (
                    await conn.execute(
                        select(
                            jobs.c.type, jobs.c.status, jobs.c.created_at, jobs.c.finished_at
                        ).where(jobs.c.id == job_id)
                    )
                ).first()
        except Exception as exc:  # metrics never fail a message
            log.warning("could not read a finished job for the metrics", error=repr(exc))
            return
        if job is not None and is_terminal(job.status):
            job_finished(job.type, job.status, job.created_at, job.finished_at)

    async def sweep_orphans(db: TenantDatabase) -> None:
        if db.tenant is not None:  # this task's own context: its log lines
            structlog.contextvars.bind_contextvars(tenant=db.tenant)
        applier = appliers[db.tenant]

        async def apply_fact(conn: AsyncConnection, fact: Message) -> object:
            return await applier.apply(conn, fact, f"fact:{fact.job_id}")

        while True:
            try:
                handled = await in_transaction(
                    db,
                    lambda conn: recover_orphans(
                        conn,
                        threshold_seconds=settings.orphan_threshold_seconds,
                        max_recoveries=settings.max_recoveries,
                        apply_fact=apply_fact,
                    ),
                )
                await in_transaction(
                    db,
                    lambda conn: flag_waiting_jobs(
                        conn, threshold_seconds=settings.orphan_threshold_seconds, tenant=db.tenant
                    ),
                )
                if handled:
                    db.relay.wake()
            except Exception as exc:
                log.warning(
                    "orphan sweep failed; will try again", tenant=db.tenant, error=repr(exc)
                )
            await asyncio.sleep(settings.orphan_check_interval_seconds)

    async def on_startup() -> None:
        await declare_topology_when_available(settings)
        for db in databases:
            imported = await when_available(
                functools.partial(import_ods_instances, db.engine, key, db.settings),
                "start-up sync",
                settings.startup_wait_seconds,
            )
            log.info("start-up sync done", tenant=db.tenant, imported=len(imported))

    watchdog = Watchdog.from_settings(broker, settings, lambda: [STATUS_QUEUE, DEAD_COMMANDS_QUEUE])

    async def after_startup() -> None:
        # State recovery: orphaned jobs are swept at once (the relay sends unsent rows).
        for db in databases:
            tasks.start(sweep_orphans(db))
        tasks.start(watchdog.run())

    return outbox_consumer_app(
        broker,
        settings,
        databases=databases,
        publisher=publisher,
        tasks=tasks,
        on_startup=on_startup,
        after_startup=after_startup,
    )
