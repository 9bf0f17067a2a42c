"""The status service: the only writer of status transitions."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from faststream import AckPolicy, FastStream
from faststream.asgi import AsgiFastStream
from faststream.rabbit import Channel, RabbitMessage, RabbitQueue
from faststream.rabbit.schemas import QueueType
from pydantic import ValidationError

from contracts.messages import UnknownMessageTypeError, parse_event
from services.runtime.db import create_admin_engine
from services.runtime.logging import get_logger
from services.runtime.messaging import consumer_app, make_broker, message_context
from services.runtime.settings import Settings
from services.runtime.topology import STATUS_QUEUE, declare_topology
from services.status.apply import StatusApplier
from services.status.connection_strings import ods_connection_string
from services.status.sync import import_ods_instances

log = get_logger(__name__)


def message_key(message: RabbitMessage) -> str:
    """The inbox key: the message id, or a digest of the body for a message sent without one."""
    return message.message_id or "sha256:" + hashlib.sha256(message.body).hexdigest()


def create_app(settings: Settings) -> FastStream | AsgiFastStream:
    key = settings.encryption_key_bytes()  # a start-up error when missing in production
    if settings.uses_development_key:
        log.warning(
            "using the public development encryption key: set "
            "ODS_CONNECTION_STRING_ENCRYPTION_KEY to the key your ODS/API uses"
        )
    broker = make_broker(settings, f"status:{os.getpid()}")
    engine = create_admin_engine(settings.admin_database_url)
    applier = StatusApplier(key, lambda db: ods_connection_string(settings, db))

    @broker.subscriber(
        RabbitQueue(STATUS_QUEUE, queue_type=QueueType.QUORUM, declare=False),
        channel=Channel(prefetch_count=1),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        title=STATUS_QUEUE,
        description="Progress and outcome events, applied in one transaction each",
    )
    async def on_event(body: Any, message: RabbitMessage) -> None:
        # `body` is FastStream's decoded copy; the contract is parsed from the raw bytes.
        type_header = (message.headers or {}).get("type") or message.raw_message.type
        try:
            event = parse_event(str(type_header) if type_header else None, message.body)
        except (UnknownMessageTypeError, ValidationError) as exc:
            log.error(
                "unreadable event dead-lettered",
                message_id=message.message_id,
                type=type_header,
                reason=str(exc)[:500],
            )
            await message.reject(requeue=False)
            return
        with message_context(event, message):
            async with engine.begin() as conn:
                outcome = await applier.apply(conn, event, message_key(message))
            log.debug("event processed", event_type=type(event).__name__, outcome=outcome)

    async def on_startup() -> None:
        await declare_topology(settings.rabbitmq_url, settings.shard_count, settings.delivery_limit)
        imported = await import_ods_instances(engine, key)
        log.info("start-up sync done", imported=len(imported))

    async def after_shutdown() -> None:
        await engine.dispose()

    return consumer_app(broker, settings, on_startup=[on_startup], after_shutdown=[after_shutdown])
