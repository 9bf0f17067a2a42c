"""The scheduler: fires due schedules through the outbox (any number of replicas, never the same
occurrence twice) and runs the maintenance jobs (reconcile, prune) from its queue."""

from __future__ import annotations

import os
import socket
from typing import Any

from faststream import AckPolicy, FastStream
from faststream.asgi import AsgiFastStream
from faststream.rabbit import Channel, RabbitMessage, RabbitQueue
from faststream.rabbit.schemas import QueueType

from contracts.messages import parse_maintenance
from services.runtime.db import create_admin_engine
from services.runtime.logging import get_logger
from services.runtime.messaging import (
    make_broker,
    message_context,
    outbox_consumer_app,
    parse_or_dead_letter,
)
from services.runtime.outbox import OutboxRelay
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


def create_app(settings: Settings) -> FastStream | AsgiFastStream:
    key = settings.encryption_key_bytes()  # reconcile reads dbo connection strings
    broker = make_broker(settings, worker_id())
    engine = create_admin_engine(settings.admin_database_url)
    publisher = ConfirmingPublisher(settings.rabbitmq_url)
    relay = OutboxRelay.from_settings(engine, publisher, settings)
    scheduler = Scheduler(engine, settings, relay.wake)
    worker = MaintenanceWorker(engine, settings, key, worker_id())
    tasks = BackgroundTasks()

    @broker.subscriber(
        RabbitQueue(MAINTENANCE_QUEUE, queue_type=QueueType.QUORUM, declare=False),
        channel=Channel(prefetch_count=1),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        title=MAINTENANCE_QUEUE,
        description="Maintenance jobs (reconcile, prune), one at a time per replica",
    )
    async def on_maintenance(body: Any, message: RabbitMessage) -> None:
        cmd = await parse_or_dead_letter(
            message, parse_maintenance, "unreadable maintenance command dead-lettered"
        )
        if cmd is None:
            return
        with message_context(cmd, message):
            await worker.handle(cmd)

    async def on_startup() -> None:
        await declare_topology_when_available(settings)

    watchdog = Watchdog.from_settings(broker, settings, lambda: [MAINTENANCE_QUEUE])

    async def after_startup() -> None:
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
        engine=engine,
        publisher=publisher,
        relay=relay,
        tasks=tasks,
        on_startup=on_startup,
        after_startup=after_startup,
    )
