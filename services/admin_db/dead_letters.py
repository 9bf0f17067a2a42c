"""Dead letters listed and requeued, the same way from the command line (`just dead-letters`) and
over HTTP (`/v2/deadLetters`): a requeued command re-opens its failed job and goes out again
through the outbox; a requeued outcome event re-opens its job and is published again."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts.messages import (
    InstanceRequested,
    MaintenanceRequested,
    UnknownMessageTypeError,
    parse_event,
)
from services.admin_db.dialect import xact_lock
from services.admin_db.requeue import reopen_and_redrive, reopen_for_event
from services.runtime import dead_letters
from services.runtime.dead_letters import DeadLetter, describe, letter_id
from services.runtime.publisher import ConfirmingPublisher
from services.runtime.topology import (
    MAINTENANCE_DEAD_QUEUE,
    PROVISIONER_DEAD_QUEUE,
    STATUS_DEAD_QUEUE,
)

T = TypeVar("T")
QUEUES = (PROVISIONER_DEAD_QUEUE, STATUS_DEAD_QUEUE, MAINTENANCE_DEAD_QUEUE)
# lock key "edfi-im dead letters": reading a queue takes every message of it for a
# moment, so two readers at once (gateways, the command line) would each see only a part.
BROWSE_LOCK_KEY = 0x0ED1F1_DEAD

# One transaction in the admin database of the tenant a message names.
InTenant = Callable[[str | None, Callable[[AsyncConnection], Awaitable[Any]]], Awaitable[Any]]


@asynccontextmanager
async def _browsing(engine: AsyncEngine) -> AsyncIterator[None]:
    """Readers one at a time: a lock held for the browse's transaction (an advisory lock on
    PostgreSQL, an application lock on SQL Server)."""
    async with engine.begin() as conn:
        await xact_lock(conn, BROWSE_LOCK_KEY)
        yield


class UnreadableLetterError(ValueError):
    """A dead letter that cannot be requeued: no service could ever read it."""


def unreadable(queue: str, body: bytes, type_header: str | None) -> str | None:
    """Why a dead letter of `queue` can never be handled as it is, or None when it reads as
    the contract that queue holds."""
    try:
        data = json.loads(body)
    except ValueError:
        return "its body is not JSON"
    if not isinstance(data, dict):
        return "its body is not a JSON object"
    try:
        if queue == PROVISIONER_DEAD_QUEUE:
            InstanceRequested.model_validate(data)
        elif queue == STATUS_DEAD_QUEUE:
            parse_event(type_header, data)
        elif queue == MAINTENANCE_DEAD_QUEUE:
            MaintenanceRequested.model_validate(data)
    except UnknownMessageTypeError as exc:
        return f"its type names no contract the status service knows ({exc})"
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        return (
            f"it is not a valid {exc.title} ({where}: {first['msg']}; {exc.error_count()} error(s))"
        )
    return None


def _described(queue: str, message: AbstractIncomingMessage) -> DeadLetter:
    letter = describe(message)
    letter.unreadable = unreadable(queue, message.body, letter.type)
    return letter


async def list_dead(rabbitmq_url: str, queue: str, lock: AsyncEngine) -> list[DeadLetter]:
    async with _browsing(lock):
        letters = await dead_letters.browse(rabbitmq_url, queue)
    for letter in letters:
        letter.unreadable = unreadable(queue, letter.body.encode(), letter.type)
    return letters


async def discard(
    rabbitmq_url: str,
    queue: str,
    message_id: str,
    *,
    lock: AsyncEngine,
    visible: Callable[[DeadLetter], bool] = lambda _: True,
) -> str:
    """Remove one dead letter for good (an unreadable one, or one nobody wants sent again);
    what was removed, in words. LookupError when it is not there (or not `visible`)."""

    async def drop(message: AbstractIncomingMessage) -> str:
        letter = _described(queue, message)
        about = f"job {letter.job_id}" if letter.job_id else "no job it names"
        why = f"; {letter.unreadable}" if letter.unreadable else ""
        kind = letter.type or "no type"
        return f"discarded {letter_id(message)} from {queue} ({kind}, {about}{why})"

    async with _browsing(lock):
        return await dead_letters.take(rabbitmq_url, queue, message_id, drop, visible)


async def requeue(
    rabbitmq_url: str,
    queue: str,
    message_id: str,
    *,
    lock: AsyncEngine,
    in_tenant: InTenant,
    visible: Callable[[DeadLetter], bool] = lambda _: True,
) -> str:
    """Send one dead letter on again; what was done, in words. LookupError when it is not
    there (or not `visible`); RequeueRefusedError when its job cannot be re-opened;
    UnknownTenantError when it names a tenant not configured here; ValueError when it does not
    say where it was first sent."""

    async def send_on(message: AbstractIncomingMessage) -> str:
        return await _send_on(rabbitmq_url, queue, message, in_tenant)

    async with _browsing(lock):
        return await dead_letters.take(rabbitmq_url, queue, message_id, send_on, visible)


async def _send_on(
    rabbitmq_url: str, queue: str, message: AbstractIncomingMessage, in_tenant: InTenant
) -> str:
    letter = _described(queue, message)
    if letter.unreadable:
        raise UnreadableLetterError(
            f"{letter_id(message)} cannot be requeued: {letter.unreadable}, so it would only be "
            f"dead-lettered again; discard it (`just dead-letters discard --queue {queue} "
            f"{letter_id(message)}`)"
        )
    reopened = ""
    if queue == PROVISIONER_DEAD_QUEUE:
        try:
            command = InstanceRequested.model_validate_json(message.body)
        except ValidationError:
            command = None
        if command is not None:
            await in_tenant(command.tenant, lambda conn: reopen_and_redrive(conn, command))
            return f"job {command.job_id} re-opened and its command sent again (outbox)"
    if queue == STATUS_DEAD_QUEUE:
        # An outcome EdFi_Admin refused to record: its job failed; re-open it so that the event
        # is applied when it comes back.
        headers = dict(message.headers or {})
        try:
            kind = str(headers.get("type") or message.type or "") or None
            event = parse_event(kind, message.body)
        except (UnknownMessageTypeError, ValidationError):
            event = None
        if event is not None and await in_tenant(
            event.tenant, lambda conn: reopen_for_event(conn, event)
        ):
            reopened = f"job {event.job_id} re-opened; "
    if not letter.exchange:
        raise ValueError("the message does not say where it was first sent (no x-death)")
    publisher = ConfirmingPublisher(rabbitmq_url)
    try:
        await publisher.publish(
            exchange=letter.exchange,
            routing_key=letter.routing_key or "",
            body=json.loads(message.body),
            message_id=message.message_id or str(uuid.uuid4()),
            message_type=letter.type or "",
            correlation_id=message.correlation_id,
        )
    finally:
        await publisher.close()
    return f"{reopened}republished to {letter.exchange} with routing key {letter.routing_key!r}"
