"""Each tenant's admin database (and its outbox relay) inside one service process.

In single-tenant mode there is one entry, keyed None, built from the top-level settings. A
message names its tenant (`Envelope.tenant`); a service looks the tenant up here and acts on that
tenant's databases and servers only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from faststream import FastStream
from faststream.asgi import AsgiFastStream
from faststream.rabbit import RabbitBroker, RabbitMessage
from sqlalchemy.ext.asyncio import AsyncEngine

from services.admin_db.engine import create_admin_engine
from services.admin_db.relay import OutboxRelay
from services.rules.errors import PermanentError
from services.runtime.logging import get_logger
from services.runtime.messaging import consumer_app
from services.runtime.metrics import MESSAGES_DEAD_LETTERED
from services.runtime.publisher import ConfirmingPublisher
from services.runtime.settings import Settings
from services.runtime.startup import BackgroundTasks

log = get_logger(__name__)


class UnknownTenantError(PermanentError):
    """A message or request names a tenant this process is not configured for."""

    def __init__(self, tenant: str | None) -> None:
        super().__init__(
            "it names no tenant, but this service has tenants (EDFI_IM_TENANTS)"
            if tenant is None
            else f"tenant {tenant!r} is not configured in this service (EDFI_IM_TENANTS)"
        )
        self.tenant = tenant


@dataclass
class TenantDatabase:
    """One tenant's settings (already resolved), admin engine and outbox relay."""

    settings: Settings
    engine: AsyncEngine
    relay: OutboxRelay

    @property
    def tenant(self) -> str | None:
        return self.settings.tenant


class TenantDatabases:
    """Every tenant's admin database of one service, built once at start-up."""

    def __init__(
        self,
        settings: Settings,
        publisher: ConfirmingPublisher,
        *,
        pool_size: int = 5,
        pre_ping: bool = True,
    ) -> None:
        self._by_name: dict[str | None, TenantDatabase] = {}
        for name, resolved in settings.tenant_settings().items():
            engine = create_admin_engine(
                resolved.admin_database_url, pool_size=pool_size, pre_ping=pre_ping
            )
            relay = OutboxRelay.from_settings(engine, publisher, resolved)
            self._by_name[name] = TenantDatabase(resolved, engine, relay)

    def get(self, tenant: str | None) -> TenantDatabase:
        try:
            return self._by_name[tenant]
        except KeyError:
            raise UnknownTenantError(tenant) from None

    def __iter__(self) -> Iterator[TenantDatabase]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def start_relays(self) -> None:
        for db in self:
            db.relay.start()

    async def stop_relays(self) -> None:
        await asyncio.gather(*(db.relay.stop() for db in self))

    async def dispose(self) -> None:
        await asyncio.gather(*(db.engine.dispose() for db in self))


async def tenant_or_dead_letter(
    databases: TenantDatabases, tenant: str | None, message: RabbitMessage
) -> TenantDatabase | None:
    """The message's tenant, or None after dead-lettering it: a tenant this process is not
    configured for will not appear by retrying (fix the configuration, then requeue it)."""
    try:
        return databases.get(tenant)
    except UnknownTenantError as exc:
        log.error("message for an unknown tenant dead-lettered", reason=str(exc))
        MESSAGES_DEAD_LETTERED.labels("unknown tenant").inc()
        await message.reject(requeue=False)
        return None


def outbox_consumer_app(
    broker: RabbitBroker,
    settings: Settings,
    *,
    databases: TenantDatabases,
    publisher: ConfirmingPublisher,
    tasks: BackgroundTasks,
    on_startup: Callable[[], Awaitable[None]],
    after_startup: Callable[[], Awaitable[None]],
) -> FastStream | AsgiFastStream:
    """A consumer app that also relays its admin databases' outboxes (one per tenant): the
    relays start before the service's own loops and stop after them; the publisher and the
    engines close last."""

    async def start() -> None:
        databases.start_relays()  # state recovery: unsent outbox rows go out at once
        await after_startup()

    async def stop() -> None:
        await tasks.stop()
        await databases.stop_relays()

    async def close() -> None:
        await publisher.close()
        await databases.dispose()

    return consumer_app(
        broker,
        settings,
        on_startup=[on_startup],
        after_startup=[start],
        on_shutdown=[stop],
        after_shutdown=[close],
    )
