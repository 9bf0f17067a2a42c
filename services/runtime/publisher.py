"""Publishing raw outbox rows with publisher confirms."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractRobustChannel, AbstractRobustConnection

from services.rules.errors import PermanentError, TransientError


class MessageRefusedError(PermanentError):
    """The broker refused this message (unroutable, nacked) or it cannot be sent at all; the
    broker itself is up, and other messages may well go."""


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
        try:
            encoded = json.dumps(body, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise MessageRefusedError(f"message {message_id} cannot be serialised: {exc}") from exc
        message = aio_pika.Message(
            encoded,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            correlation_id=correlation_id,
            type=message_type,
            headers={"type": message_type},
        )
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
            # Start from a fresh connection next time rather than trust one that failed.
            await self._reset()
            raise TransientError(f"broker unavailable: {exc!r}") from exc

    async def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._exchanges.clear()
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
