"""FastStream plumbing shared by the consumer services."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextvars import ContextVar

import structlog
import uvicorn
from faststream.asgi import AsgiFastStream, make_ping_asgi
from faststream.rabbit import RabbitBroker, RabbitMessage

from contracts.messages import Message, message_type
from services.runtime.settings import Settings
from services.runtime.topology import EVENTS_EXCHANGE


# The correlation id of the message being handled, carried onto the events it causes.
current_correlation: ContextVar[str | None] = ContextVar("current_correlation", default=None)


def make_broker(settings: Settings) -> RabbitBroker:
    return RabbitBroker(
        settings.rabbitmq_url,
        graceful_timeout=settings.graceful_timeout_seconds,
        reconnect_interval=2.0,
        log_level=20,
    )


def delivery_attempt(message: RabbitMessage) -> int:
    """1 for the first delivery; quorum queues count redeliveries in `x-delivery-count`."""
    headers = message.raw_message.headers or {}
    count = headers.get("x-delivery-count", 0)
    try:
        return int(count) + 1  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 1


@contextlib.contextmanager
def message_context(msg: Message, message: RabbitMessage) -> Iterator[None]:
    token = current_correlation.set(message.correlation_id)
    try:
        with structlog.contextvars.bound_contextvars(
            job_id=str(msg.job_id),
            instance_id=msg.instance_id,
            correlation_id=message.correlation_id,
            message_id=message.message_id,
        ):
            yield
    finally:
        current_correlation.reset(token)


async def publish_event(broker: RabbitBroker, event: Message) -> None:
    """Publish an event to `instances.events` and wait for the broker's confirm."""
    kind = type(event).__name__
    await broker.publish(
        event.model_dump(mode="json"),
        exchange=EVENTS_EXCHANGE,
        routing_key=f"instance.{event.instance_id}.{kind}",
        message_id=str(uuid.uuid4()),
        correlation_id=current_correlation.get(),
        headers={"type": message_type(event)},
        message_type=message_type(event),
        persist=True,
    )


async def serve(app: AsgiFastStream, settings: Settings) -> None:
    """Run the consumer app; with a health port also answer `GET /health` over HTTP."""
    if settings.health_port is None:
        await app.run()
        return
    config = uvicorn.Config(
        app, host="0.0.0.0", port=settings.health_port, log_config=None, lifespan="on"  # noqa: S104
    )
    await uvicorn.Server(config).serve()


def asgi_app(broker: RabbitBroker, **kwargs: object) -> AsgiFastStream:
    return AsgiFastStream(
        broker,
        asgi_routes=[("/health", make_ping_asgi(broker, timeout=5.0))],
        **kwargs,  # type: ignore[arg-type]
    )
