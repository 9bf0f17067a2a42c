"""The status service: applies the provisioner's events (the one place outcomes are applied),
fails the jobs of dead-lettered commands, recovers orphaned jobs. Its entry point: the broker
and the subscribers, which hand each message to a handler (handlers.py)."""

from __future__ import annotations

import functools
import os
from typing import Annotated, Any

from faststream import AckPolicy, FastStream
from faststream.asgi import AsgiFastStream
from faststream.rabbit import Channel, RabbitQueue
from faststream.rabbit.schemas import QueueType
from faststream.specification import AsyncAPI
from pydantic import WithJsonSchema

from contracts.messages import EVENT_TYPES, InstanceRequested
from services.admin_db.tenants import TenantDatabases, outbox_consumer_app
from services.rules.connection_strings import quoting_warning, shared_credentials_warning
from services.runtime.asyncapi import contract_schema, document_commands, specification
from services.runtime.logging import get_logger
from services.runtime.messaging import Delivery, make_broker
from services.runtime.publisher import ConfirmingPublisher
from services.runtime.settings import Settings
from services.runtime.startup import (
    BackgroundTasks,
    declare_topology_when_available,
    when_available,
)
from services.runtime.topology import DEAD_COMMANDS_QUEUE, STATUS_QUEUE
from services.runtime.watchdog import Watchdog
from services.status import handlers
from services.status.handlers import Status

log = get_logger(__name__)

DESCRIPTION = (
    "The one place outcomes are applied: applies the provisioner's events to the admin "
    "database, fails the jobs of dead-lettered commands, and re-drives orphaned jobs through "
    "its outbox."
)
EventBody = Annotated[Any, WithJsonSchema(contract_schema(*EVENT_TYPES.values()))]
CommandBody = Annotated[Any, WithJsonSchema(contract_schema(InstanceRequested))]


def asyncapi(settings: Settings) -> AsyncAPI:
    app = create_app(settings)
    return specification(app.broker, "status", DESCRIPTION)


def warn_about_connection_strings(settings: Settings) -> None:
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


def create_app(settings: Settings) -> FastStream | AsgiFastStream:
    key = settings.encryption_key_bytes()  # a start-up error when missing in production
    warn_about_connection_strings(settings)
    broker = make_broker(settings, f"status:{os.getpid()}")
    publisher = ConfirmingPublisher(settings.rabbitmq_url)
    # No pre-ping (one round trip fewer per event): every use of these engines here is retried
    # on a transient error (in_transaction, the relay, the start-up sync), and the metrics'
    # read after a refusal or a dead-lettered command only logs a failure.
    databases = TenantDatabases(settings, publisher, pre_ping=False)
    status = Status.build(settings, databases, key)
    tasks = BackgroundTasks()
    document_commands(broker, "orphaned jobs' commands, sent again through the outbox")

    @broker.subscriber(
        RabbitQueue(STATUS_QUEUE, queue_type=QueueType.QUORUM, declare=False),
        channel=Channel(prefetch_count=1),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        title=STATUS_QUEUE,
        description="Progress and outcome events, applied in one transaction each",
    )
    async def on_event(body: EventBody, message: Delivery) -> None:
        # `body` is FastStream's decoded copy; the contract is parsed from the raw bytes.
        await handlers.on_event(status, message)

    @broker.subscriber(
        RabbitQueue(DEAD_COMMANDS_QUEUE, queue_type=QueueType.QUORUM, declare=False),
        channel=Channel(prefetch_count=1),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        title=DEAD_COMMANDS_QUEUE,
        description="Copies of dead-lettered commands: their jobs are failed, visibly",
    )
    async def on_dead_command(body: CommandBody, message: Delivery) -> None:
        await handlers.on_dead_command(status, message)

    async def on_startup() -> None:
        await declare_topology_when_available(settings)
        for db in databases:
            imported = await when_available(
                functools.partial(handlers.start_up_sync, db, key),
                "start-up sync",
                settings.startup_wait_seconds,
            )
            log.info("start-up sync done", tenant=db.tenant, imported=len(imported))

    watchdog = Watchdog.from_settings(broker, settings, lambda: [STATUS_QUEUE, DEAD_COMMANDS_QUEUE])

    async def after_startup() -> None:
        # State recovery: orphaned jobs are swept at once (the relay sends unsent rows).
        for db in databases:
            tasks.start(handlers.keep_sweeping(status, db))
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
