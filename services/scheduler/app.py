"""The scheduler: fires due schedules through the outbox (any number of replicas, never the same
occurrence twice) and runs the maintenance jobs (reconcile, prune) from its queue."""

from __future__ import annotations

import os
import socket
from typing import Annotated, Any

from faststream import AckPolicy, FastStream
from faststream.asgi import AsgiFastStream
from faststream.rabbit import Channel, RabbitQueue
from faststream.rabbit.schemas import QueueType
from faststream.specification import AsyncAPI
from pydantic import WithJsonSchema

from contracts.messages import MaintenanceRequested, parse_maintenance
from services.admin_db.tenants import TenantDatabases, outbox_consumer_app, tenant_or_dead_letter
from services.runtime.asyncapi import contract_schema, document_commands, specification
from services.runtime.logging import get_logger
from services.runtime.messaging import Delivery, make_broker, message_context, parse_or_dead_letter
from services.runtime.metrics import MESSAGES_CONSUMED
from services.runtime.publisher import ConfirmingPublisher
from services.runtime.settings import Settings
from services.runtime.startup import BackgroundTasks, declare_topology_when_available
from services.runtime.topology import MAINTENANCE_QUEUE
from services.runtime.watchdog import Watchdog
from services.scheduler.firing import Scheduler
from services.scheduler.maintenance import MaintenanceWorker

log = get_logger(__name__)


def worker_id() -> str:
    return f"scheduler:{socket.gethostname()}:{os.getpid()}"


DESCRIPTION = (
    "Fires due schedules (their jobs' commands go out through the outbox) and runs the "
    "maintenance jobs, reconcile and prune."
)
MaintenanceBody = Annotated[Any, WithJsonSchema(contract_schema(MaintenanceRequested))]


def asyncapi(settings: Settings) -> AsyncAPI:
    app = create_app(settings)
    return specification(app.broker, "scheduler", DESCRIPTION)


def create_app(settings: Settings) -> FastStream | AsgiFastStream:
    key = settings.encryption_key_bytes()  # reconcile reads dbo connection strings
    broker = make_broker(settings, worker_id())
    publisher = ConfirmingPublisher(settings.rabbitmq_url)
    databases = TenantDatabases(settings, publisher)
    # Each tenant's schedules fire into its own admin database; its maintenance jobs run there.
    schedulers = [Scheduler(db.engine, db.settings, db.relay.wake) for db in databases]
    workers = {
        db.tenant: MaintenanceWorker(db.engine, db.settings, key, worker_id()) for db in databases
    }
    tasks = BackgroundTasks()
    document_commands(broker, "the commands of the jobs schedules fire, sent through the outbox")

    @broker.subscriber(
        RabbitQueue(MAINTENANCE_QUEUE, queue_type=QueueType.QUORUM, declare=False),
        channel=Channel(prefetch_count=1),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        title=MAINTENANCE_QUEUE,
        description="Maintenance jobs (reconcile, prune), one at a time per replica",
    )
    async def on_maintenance(body: MaintenanceBody, message: Delivery) -> None:
        cmd = await parse_or_dead_letter(
            message, parse_maintenance, "unreadable maintenance command dead-lettered"
        )
        if cmd is None:
            return
        MESSAGES_CONSUMED.labels(MAINTENANCE_QUEUE).inc()
        with message_context(cmd, message):
            db = await tenant_or_dead_letter(databases, cmd.tenant, message)
            if db is not None:
                await workers[db.tenant].handle(cmd)

    async def on_startup() -> None:
        await declare_topology_when_available(settings)

    watchdog = Watchdog.from_settings(broker, settings, lambda: [MAINTENANCE_QUEUE])

    async def after_startup() -> None:
        for scheduler in schedulers:
            tasks.start(scheduler.run())
        tasks.start(watchdog.run())
        log.info(
            "scheduler started",
            poll_interval_seconds=settings.scheduler_poll_interval_seconds,
            misfire_threshold_seconds=settings.misfire_threshold_seconds,
        )

    return outbox_consumer_app(
        broker,
        settings,
        databases=databases,
        publisher=publisher,
        tasks=tasks,
        on_startup=on_startup,
        after_startup=after_startup,
    )
