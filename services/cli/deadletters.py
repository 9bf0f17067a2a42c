"""`just dead-letters`: list dead-lettered messages and requeue one after a fix."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts.messages import InstanceRequested, UnknownMessageTypeError, parse_event
from services.admin_db.engine import create_admin_engine
from services.admin_db.tenants import UnknownTenantError
from services.runtime.publisher import ConfirmingPublisher
from services.runtime.settings import Settings
from services.runtime.topology import PROVISIONER_DEAD_QUEUE, STATUS_DEAD_QUEUE

T = TypeVar("T")


@dataclass
class DeadLetter:
    message_id: str | None
    type: str | None
    reason: str
    queue: str | None
    exchange: str | None
    routing_key: str | None
    body: str


def _describe(message: AbstractIncomingMessage) -> DeadLetter:
    headers: dict[str, Any] = dict(message.headers or {})
    deaths = headers.get("x-death") or []
    first: dict[str, Any] = deaths[0] if deaths and isinstance(deaths[0], dict) else {}
    keys = first.get("routing-keys") or []
    return DeadLetter(
        message_id=message.message_id,
        type=str(headers.get("type") or message.type or "") or None,
        reason=f"{first.get('reason', '?')} x{first.get('count', '?')}",
        queue=first.get("queue"),
        exchange=first.get("exchange"),
        routing_key=str(keys[0]) if keys else None,
        body=message.body.decode(errors="replace"),
    )


async def _take_all(
    channel: aio_pika.abc.AbstractChannel, queue_name: str
) -> list[AbstractIncomingMessage]:
    queue = await channel.get_queue(queue_name, ensure=True)
    got = []
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        got.append(message)
    return got


async def list_dead(settings: Settings, queue_name: str) -> list[DeadLetter]:
    connection = await aio_pika.connect(settings.rabbitmq_url)
    try:
        channel = await connection.channel()
        messages = await _take_all(channel, queue_name)
        out = [_describe(m) for m in messages]
        for m in messages:
            await m.nack(requeue=True)
        return out
    finally:
        await connection.close()


async def requeue(settings: Settings, queue_name: str, message_id: str) -> str:
    """Send one dead letter on again; returns what was done. Raises LookupError if absent."""
    connection = await aio_pika.connect(settings.rabbitmq_url)
    try:
        channel = await connection.channel()
        messages = await _take_all(channel, queue_name)
        target = next((m for m in messages if m.message_id == message_id), None)
        for m in messages:
            if m is not target:
                await m.nack(requeue=True)
        if target is None:
            raise LookupError(f"no message {message_id} in {queue_name}")
        try:
            done = await _send_on(settings, queue_name, target)
        except Exception:
            await target.nack(requeue=True)
            raise
        await target.ack()
        return done
    finally:
        await connection.close()


async def _in_tenant(
    settings: Settings, tenant: str | None, work: Callable[[AsyncConnection], Awaitable[T]]
) -> T:
    """One transaction in the admin database of the tenant a message names."""
    resolved = settings.tenant_settings().get(tenant)
    if resolved is None:
        raise UnknownTenantError(tenant)
    engine = create_admin_engine(resolved.admin_database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            return await work(conn)
    finally:
        await engine.dispose()


async def _send_on(settings: Settings, queue_name: str, message: AbstractIncomingMessage) -> str:
    from services.status.recovery import reopen_and_redrive, reopen_for_event

    reopened = ""
    if queue_name == PROVISIONER_DEAD_QUEUE:
        try:
            command = InstanceRequested.model_validate_json(message.body)
        except ValidationError:
            command = None
        if command is not None:
            await _in_tenant(
                settings, command.tenant, lambda conn: reopen_and_redrive(conn, command)
            )
            return f"job {command.job_id} re-opened and its command sent again (outbox)"
    if queue_name == STATUS_DEAD_QUEUE:
        # An outcome EdFi_Admin refused to record: its job failed; re-open it so that the event
        # is applied when it comes back.
        headers = dict(message.headers or {})
        try:
            kind = str(headers.get("type") or message.type or "") or None
            event = parse_event(kind, message.body)
        except (UnknownMessageTypeError, ValidationError):
            event = None
        if event is not None and await _in_tenant(
            settings, event.tenant, lambda conn: reopen_for_event(conn, event)
        ):
            reopened = f"job {event.job_id} re-opened; "
    letter = _describe(message)
    if not letter.exchange:
        raise ValueError("the message does not say where it was first sent (no x-death)")
    publisher = ConfirmingPublisher(settings.rabbitmq_url)
    try:
        await publisher.publish(
            exchange=letter.exchange,
            routing_key=letter.routing_key or "",
            body=json.loads(message.body),
            message_id=message.message_id or "",
            message_type=letter.type or "",
            correlation_id=message.correlation_id,
        )
    finally:
        await publisher.close()
    return f"{reopened}republished to {letter.exchange} with routing key {letter.routing_key!r}"
