"""`just dead-letters`: list dead-lettered messages, requeue one after a fix, or discard one (the
gateway's `/v2/deadLetters` does the same through services.admin_db.dead_letters)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.admin_db import dead_letters
from services.admin_db.engine import create_admin_engine
from services.admin_db.tenants import UnknownTenantError
from services.runtime.dead_letters import DeadLetter
from services.runtime.settings import Settings


async def list_dead(settings: Settings, queue_name: str) -> list[DeadLetter]:
    lock = create_admin_engine(settings.admin_database_url, pool_size=1)
    try:
        return await dead_letters.list_dead(settings.rabbitmq_url, queue_name, lock)
    finally:
        await lock.dispose()


async def requeue(settings: Settings, queue_name: str, message_id: str) -> str:
    """Send one dead letter on again; returns what was done. Raises LookupError if absent."""

    async def in_tenant(
        tenant: str | None, work: Callable[[AsyncConnection], Awaitable[Any]]
    ) -> Any:
        resolved = settings.tenant_settings().get(tenant)
        if resolved is None:
            raise UnknownTenantError(tenant)
        engine = create_admin_engine(resolved.admin_database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                return await work(conn)
        finally:
            await engine.dispose()

    lock = create_admin_engine(settings.admin_database_url, pool_size=1)
    try:
        return await dead_letters.requeue(
            settings.rabbitmq_url, queue_name, message_id, lock=lock, in_tenant=in_tenant
        )
    finally:
        await lock.dispose()


async def discard(settings: Settings, queue_name: str, message_id: str) -> str:
    """Remove one dead letter for good; what was removed. Raises LookupError if absent."""
    lock = create_admin_engine(settings.admin_database_url, pool_size=1)
    try:
        return await dead_letters.discard(settings.rabbitmq_url, queue_name, message_id, lock=lock)
    finally:
        await lock.dispose()
