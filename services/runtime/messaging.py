"""FastStream plumbing shared by the consumer services."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import structlog
import uvicorn
from faststream import FastStream
from faststream._internal.context import Context  # the class `faststream.Context()` builds
from faststream.asgi import AsgiFastStream, make_ping_asgi
from faststream.rabbit import RabbitBroker, RabbitMessage
from faststream.rabbit.message import RabbitMessage as RabbitDelivery
from prometheus_client import make_asgi_app
from pydantic import ValidationError

from contracts.messages import Envelope, Message, UnknownMessageTypeError, message_type
from services.runtime.logging import get_logger
from services.runtime.metrics import MESSAGES_DEAD_LETTERED
from services.runtime.settings import Settings
from services.runtime.topology import EVENTS_EXCHANGE

if TYPE_CHECKING:
    from faststream.rabbit.utils import RabbitClientProperties

log = get_logger(__name__)

# The correlation id of the message being handled, carried onto the events it causes.
current_correlation: ContextVar[str | None] = ContextVar("current_correlation", default=None)


class _OnTheLoop(Context):
    """FastStream's `Context("message")`, resolved on the event loop. fast_depends runs a custom
    field's synchronous `use` in a worker thread (anyio.to_thread), once for every message
    handled: a thread hop and its locks for a dictionary lookup."""

    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        resolved: dict[str, Any] = Context.use(self, **kwargs)
        return resolved


# A handler's `message` parameter: the delivery, as `RabbitMessage` gives it, without the hop.
Delivery = Annotated[RabbitDelivery, _OnTheLoop("message")]


# FastStream's own lines go through the root handler, so they are structlog lines too.
faststream_logger = logging.getLogger("edfi_im.faststream")


def make_broker(settings: Settings, connection_name: str) -> RabbitBroker:
    """A broker whose connection the management UI shows under `connection_name`."""
    return RabbitBroker(
        settings.rabbitmq_url,
        client_properties=cast("RabbitClientProperties", {"connection_name": connection_name}),
        graceful_timeout=settings.graceful_timeout_seconds,
        reconnect_interval=2.0,
        # Keep trying to connect: the topology step before it already fails clearly (after
        # EDFI_IM_STARTUP_WAIT_SECONDS) when the broker is really unreachable.
        fail_fast=False,
        logger=faststream_logger,
    )


M = TypeVar("M", bound=Envelope)


async def parse_or_dead_letter(
    message: RabbitMessage, parse: Callable[[str | None, bytes], M], log_event: str
) -> M | None:
    """The message's contract, or None after dead-lettering it at once: retrying a message
    that cannot be read cannot help, and it must not hold up its queue."""
    type_header = (message.headers or {}).get("type") or message.raw_message.type
    try:
        return parse(str(type_header) if type_header else None, message.body)
    except (UnknownMessageTypeError, ValidationError) as exc:
        log.error(
            log_event,
            message_id=message.message_id,
            type=type_header,
            reason=str(exc)[:1000],
        )
        MESSAGES_DEAD_LETTERED.labels("unreadable").inc()
        await message.reject(requeue=False)
        return None


def delivery_attempt(message: RabbitMessage) -> int:
    """1 for the first delivery; quorum queues count redeliveries in `x-delivery-count`."""
    headers = message.raw_message.headers or {}
    count = headers.get("x-delivery-count", 0)
    return int(count) + 1 if isinstance(count, int | str) and str(count).isdigit() else 1


@contextlib.contextmanager
def message_context(msg: Envelope, message: RabbitMessage) -> Iterator[None]:
    token = current_correlation.set(message.correlation_id)
    try:
        with structlog.contextvars.bound_contextvars(
            job_id=str(msg.job_id),
            tenant=msg.tenant,
            instance_id=getattr(msg, "instance_id", None),
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


class GracefulServer(uvicorn.Server):
    """uvicorn, but a graceful stop on SIGTERM/SIGINT exits 0 (uvicorn re-raises the signal,
    which a supervisor reads as a crash). `on_exit` is told at once (the gateway ends its event
    streams, which would otherwise hold the graceful shutdown until its timeout)."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()
        if self._on_exit is not None:
            self._on_exit()


async def serve(app: FastStream | AsgiFastStream, settings: Settings) -> None:
    """Run the consumer app; with a health port also answer `GET /health` over HTTP."""
    if isinstance(app, AsgiFastStream):
        config = uvicorn.Config(
            app,
            host=settings.health_host,
            port=settings.health_port or 8080,
            log_config=None,
            lifespan="on",
        )
        await GracefulServer(config).serve()
    else:
        await app.run()


def consumer_app(
    broker: RabbitBroker, settings: Settings, **hooks: Any
) -> FastStream | AsgiFastStream:
    """A FastStream app; an ASGI one serving `/health` and `/metrics` when a health port is
    set."""
    if settings.health_port is None:
        return FastStream(broker, logger=faststream_logger, **hooks)
    return AsgiFastStream(
        broker,
        asgi_routes=[
            ("/health", make_ping_asgi(broker, timeout=5.0)),
            ("/metrics", make_asgi_app()),
        ],
        logger=faststream_logger,
        **hooks,
    )
