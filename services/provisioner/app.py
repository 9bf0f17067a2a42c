"""The provisioner: consumes its shards, one message at a time per shard, in order."""

from __future__ import annotations

import asyncio
import os
import socket

from faststream import AckPolicy
from faststream import FastStream
from faststream.asgi import AsgiFastStream
from faststream.rabbit import Channel, RabbitBroker, RabbitMessage, RabbitQueue
from faststream.rabbit.schemas import QueueType

from contracts.messages import InstanceRequested, Message
from services.provisioner.handler import Provisioner
from services.provisioner.ods_server import PostgresOdsServer
from services.runtime.logging import get_logger
from services.runtime.messaging import (
    consumer_app,
    delivery_attempt,
    make_broker,
    message_context,
    publish_event,
)
from services.runtime.settings import Settings
from services.runtime.topology import declare_topology, shard_queue

log = get_logger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def subscribe_shard(broker: RabbitBroker, shard: int, provisioner: Provisioner) -> object:
    """One subscriber per shard, on its own channel with prefetch 1: order needs both."""
    subscriber = broker.subscriber(
        RabbitQueue(shard_queue(shard), queue_type=QueueType.QUORUM, declare=False),
        channel=Channel(prefetch_count=1),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        title=f"provisioner.shard.{shard}",
        description="InstanceRequested commands for the instances that hash to this shard",
    )

    @subscriber
    async def on_request(body: InstanceRequested, message: RabbitMessage) -> None:
        with message_context(body, message):
            attempt = delivery_attempt(message)
            log.info(
                "command received",
                operation=body.operation.value,
                shard=shard,
                attempt=attempt,
            )
            await provisioner.handle(body, attempt)

    return subscriber


def create_app(settings: Settings) -> FastStream | AsgiFastStream:
    broker = make_broker(settings)
    server = PostgresOdsServer(settings.ods_server_url, settings.clone_concurrency)

    async def emit(event: Message) -> None:
        await publish_event(broker, event)

    provisioner = Provisioner(
        server,
        emit,
        worker=worker_id(),
        retry_attempts=settings.step_retry_attempts,
        heartbeat_interval=settings.heartbeat_interval_seconds,
    )
    owned = settings.owned_shard_set()
    standby = [k for k in range(settings.shard_count) if k not in owned]
    for k in owned:
        subscribe_shard(broker, k, provisioner)
    tasks: list[asyncio.Task[None]] = []

    async def join_standby() -> None:
        # Owned shards first; the rest later, so another replica that owns them gets there first.
        await asyncio.sleep(settings.standby_delay_seconds)
        for k in standby:
            subscriber = subscribe_shard(broker, k, provisioner)
            await subscriber.start()  # type: ignore[attr-defined]
        log.info("standby on shards", shards=standby)

    async def on_startup() -> None:
        await declare_topology(settings.rabbitmq_url, settings.shard_count, settings.delivery_limit)

    async def after_startup() -> None:
        log.info("provisioner started", owned_shards=owned, worker=worker_id())
        if standby:
            tasks.append(asyncio.create_task(join_standby()))

    async def on_shutdown() -> None:
        for task in tasks:
            task.cancel()
        log.info("provisioner stopping")

    return consumer_app(
        broker,
        settings,
        on_startup=[on_startup],
        after_startup=[after_startup],
        on_shutdown=[on_shutdown],
    )
