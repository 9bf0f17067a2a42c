"""Publishing raw outbox rows with publisher confirms."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractRobustChannel, AbstractRobustConnection

from services.rules.errors import PermanentError, TransientError


class MessageRefusedError(PermanentError):
    """The broker refused this message (unroutable, nacked) or it cannot be sent at all; the
    broker itself is up, and other messages may well go."""


@dataclass(frozen=True)
class Outgoing:
    """One message for `ConfirmingPublisher.publish_all`."""

    exchange: str
    routing_key: str
    body: dict[str, Any]
    message_id: str
    message_type: str
    correlation_id: str | None


def _message(
    body: dict[str, Any], message_id: str, message_type: str, correlation_id: str | None
) -> aio_pika.Message:
    try:
        encoded = json.dumps(body, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise MessageRefusedError(f"message {message_id} cannot be serialised: {exc}") from exc
    return aio_pika.Message(
        encoded,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message_id,
        correlation_id=correlation_id,
        type=message_type,
        headers={"type": message_type},
    )


class ConfirmingPublisher:
    """One robust connection and confirm channel; `publish` returns once the broker confirms."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}

    async def connect(self) -> None:
        self._connection = await aio_pika.connect_robust(self._url)
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        self._channel = channel

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        self._connection = None
        self._channel = None
        self._exchanges.clear()

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def _exchange(self, name: str) -> AbstractExchange:
        if self._channel is None:
            await self.connect()
        assert self._channel is not None
        if name not in self._exchanges:
            self._exchanges[name] = await self._channel.get_exchange(name, ensure=True)
        return self._exchanges[name]

    async def publish(
        self,
        *,
        exchange: str,
        routing_key: str,
        body: dict[str, Any],
        message_id: str,
        message_type: str,
        correlation_id: str | None,
    ) -> None:
        """Publish one message; returns once the broker has confirmed it."""
        message = _message(body, message_id, message_type, correlation_id)
        await self._send(exchange, routing_key, message, message_id)

    async def publish_all(self, outgoing: Sequence[Outgoing]) -> list[Exception | None]:
        """Publish messages in the order given, then await all their confirms together: one
        confirm wait for the batch, not one per message. Returns, in the same order, None for
        each message the broker confirmed, or why it was not (a MessageRefusedError for a
        message the broker refused, a TransientError when the broker is away).

        Order on the wire is the order given: the exchanges are resolved first, then each send
        is started in order, and each reaches aiormq's channel lock (first come, first served)
        without waiting on anything before it (an open connection's `ready()` is a set event),
        so the broker numbers and queues the messages in this order.
        """
        if not outgoing:
            return []
        try:
            messages = [
                _message(o.body, o.message_id, o.message_type, o.correlation_id) for o in outgoing
            ]
        except MessageRefusedError:
            # One cannot be serialised: each one alone, so the others still go, in order.
            return [await self._one(o) for o in outgoing]
        try:
            if self._connection is not None and self._connection.is_closed:
                await self._reset()
            for name in {o.exchange for o in outgoing}:
                await self._exchange(name)
        except Exception as exc:
            failure = await self._transient(exc)
            return [failure for _ in outgoing]
        sends = [
            asyncio.ensure_future(self._send(o.exchange, o.routing_key, m, o.message_id))
            for o, m in zip(outgoing, messages, strict=True)
        ]
        results = await asyncio.gather(*sends, return_exceptions=True)
        out: list[Exception | None] = []
        for result in results:
            if result is None or isinstance(result, Exception):
                out.append(result)
            else:  # CancelledError and the like are not a message's fate: raise them
                raise result
        return out

    async def _one(self, o: Outgoing) -> Exception | None:
        try:
            await self.publish(
                exchange=o.exchange,
                routing_key=o.routing_key,
                body=o.body,
                message_id=o.message_id,
                message_type=o.message_type,
                correlation_id=o.correlation_id,
            )
        except Exception as exc:
            return exc
        return None

    async def _send(
        self, exchange: str, routing_key: str, message: aio_pika.Message, message_id: str
    ) -> None:
        try:
            if self._connection is not None and self._connection.is_closed:
                await self._reset()
            target = await self._exchange(exchange)
            await target.publish(message, routing_key=routing_key, mandatory=True, timeout=10)
        except aio_pika.exceptions.DeliveryError as exc:
            raise MessageRefusedError(
                f"the broker did not accept message {message_id} (to {exchange!r} with routing "
                f"key {routing_key!r}): {exc}"
            ) from exc
        except (aio_pika.exceptions.AMQPError, ConnectionError, TimeoutError, RuntimeError) as exc:
            raise await self._transient(exc) from exc

    async def _transient(self, exc: BaseException) -> TransientError:
        """Start from a fresh connection next time rather than trust one that failed."""
        if isinstance(exc, PermanentError | TransientError):
            return TransientError(str(exc))
        await self._reset()
        return TransientError(f"broker unavailable: {exc!r}")

    async def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._exchanges.clear()
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
