"""Dead-lettered messages as the broker holds them: read without losing them (every message of
the queue is taken unacknowledged and handed back), and one taken out to be sent on again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

REASONS = {
    "rejected": "rejected as unreadable or invalid",
    "delivery_limit": "delivered the maximum number of times without being handled",
    "expired": "expired before it was handled",
}


def death_reason(headers: dict[str, Any]) -> str:
    """Why RabbitMQ dead-lettered a message, in words."""
    deaths = headers.get("x-death") or []
    first = deaths[0] if deaths and isinstance(deaths[0], dict) else {}
    reason = first.get("reason") or headers.get("x-first-death-reason") or "unknown"
    if isinstance(reason, bytes):
        reason = reason.decode()
    return REASONS.get(str(reason), str(reason))


@dataclass
class DeadLetter:
    message_id: str  # `letter_id`: the message id, or a digest of a body sent without one
    type: str | None
    reason: str  # RabbitMQ's word and how many times, e.g. "rejected x1"
    queue: str | None  # where it was when it was dead-lettered
    exchange: str | None  # where it was first sent
    routing_key: str | None
    body: str
    why: str = ""  # the reason in words
    dead_lettered_at: str | None = None  # ISO 8601, UTC
    deaths: int = 0  # times it was dead-lettered from that queue
    death: str | None = None  # RabbitMQ's word for why: rejected, delivery_limit, expired
    tenant: str | None = None  # as its body names them (None when it cannot be read)
    job_id: str | None = None
    instance_id: int | None = None
    operation: str | None = None
    # Why it can never be handled as it is (not JSON, not its queue's contract): requeueing it
    # would only dead-letter it again; discard it. None when it reads as its contract.
    unreadable: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def letter_id(message: AbstractIncomingMessage) -> str:
    """The id a dead letter is listed, requeued and discarded by: its message id, or for a
    message sent without one a digest of its body (`sha256-…`), the same in every listing."""
    if message.message_id:
        return message.message_id
    return "sha256-" + hashlib.sha256(message.body).hexdigest()[:20]


def describe(message: AbstractIncomingMessage) -> DeadLetter:
    headers: dict[str, Any] = dict(message.headers or {})
    deaths = headers.get("x-death") or []
    first: dict[str, Any] = deaths[0] if deaths and isinstance(deaths[0], dict) else {}
    keys = first.get("routing-keys") or []
    when = first.get("time")
    try:
        body: Any = json.loads(message.body)
    except ValueError:
        body = None
    about = body if isinstance(body, dict) else {}
    instance_id = about.get("instance_id")
    return DeadLetter(
        message_id=letter_id(message),
        type=_text(headers.get("type") or message.type) or None,
        reason=f"{_text(first.get('reason')) or '?'} x{first.get('count', '?')}",
        queue=_text(first.get("queue")),
        exchange=_text(first.get("exchange")),
        routing_key=_text(keys[0]) if keys else None,
        body=message.body.decode(errors="replace"),
        why=death_reason(headers),
        dead_lettered_at=when.isoformat() if isinstance(when, datetime) else _text(when),
        deaths=int(first.get("count") or 0),
        # Not x-delivery-count: the dead-letter queue counts its own deliveries there (every
        # reading of the queue adds one), no longer those that led to the dead-lettering.
        death=_text(first.get("reason")),
        tenant=_text(about.get("tenant")),
        job_id=_text(about.get("job_id")),
        instance_id=instance_id if isinstance(instance_id, int) else None,
        operation=_text(about.get("operation")),
    )


async def _take_all(channel: AbstractChannel, queue_name: str) -> list[AbstractIncomingMessage]:
    queue = await channel.get_queue(queue_name, ensure=True)
    got = []
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        got.append(message)
    return got


@asynccontextmanager
async def _channel(url: str) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect(url)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def browse(url: str, queue_name: str) -> list[DeadLetter]:
    """Every message of the queue, described; all of them stay in it."""
    async with _channel(url) as channel:
        messages = await _take_all(channel, queue_name)
        out = [describe(m) for m in messages]
        for m in messages:
            await m.nack(requeue=True)
    return out


async def take(
    url: str,
    queue_name: str,
    message_id: str,
    send_on: Callable[[AbstractIncomingMessage], Awaitable[str]],
    visible: Callable[[DeadLetter], bool] = lambda _: True,
) -> str:
    """Take one message out of the queue once `send_on` has sent it on (its answer is
    returned); any failure leaves it where it was. LookupError when there is no such message
    (or none the caller may see)."""
    async with _channel(url) as channel:
        messages = await _take_all(channel, queue_name)
        target = next(
            (m for m in messages if letter_id(m) == message_id and visible(describe(m))), None
        )
        for m in messages:
            if m is not target:
                await m.nack(requeue=True)
        if target is None:
            raise LookupError(f"no message {message_id} in {queue_name}")
        try:
            done = await send_on(target)
        except BaseException:
            await target.nack(requeue=True)
            raise
        await target.ack()
        return done
