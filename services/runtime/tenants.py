"""Each tenant's admin database (and its outbox relay) inside one service process.

In single-tenant mode there is one entry, keyed None, built from the top-level settings. A
message names its tenant (`Envelope.tenant`); a service looks the tenant up here and acts on that
tenant's databases and servers only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from services.admin_db.engine import create_admin_engine
from services.rules.errors import PermanentError
from services.runtime.outbox import OutboxRelay
from services.runtime.publisher import ConfirmingPublisher
from services.runtime.settings import Settings


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
        self, settings: Settings, publisher: ConfirmingPublisher, *, pool_size: int = 5
    ) -> None:
        self._by_name: dict[str | None, TenantDatabase] = {}
        for name, resolved in settings.tenant_settings().items():
            engine = create_admin_engine(resolved.admin_database_url, pool_size=pool_size)
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
