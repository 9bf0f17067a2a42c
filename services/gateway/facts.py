"""An instance's database as the ODS server sees it now (size, online, sessions): what Admin API
lists as a known gap. Read with a short timeout; a slow or unreachable server gives an answer
without them that says why, never a failed request."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row

from services.admin_db.tenants import TenantDatabase
from services.gateway.schemas import DatabaseFacts
from services.rules.errors import InstanceManagerError
from services.rules.states import InstanceStatus
from services.runtime.logging import get_logger
from services.runtime.ods_servers import database_facts

log = get_logger(__name__)

# Statuses whose instance has (or had until just now) a database worth asking about.
WITH_DATABASE = {
    InstanceStatus.COMPLETED.value,
    InstanceStatus.PENDING_RENAME.value,
    InstanceStatus.RENAME_FAILED.value,
    InstanceStatus.PENDING_DELETE.value,
    InstanceStatus.DELETE_FAILED.value,
}


async def facts_of(state: TenantDatabase, row: Row[Any]) -> DatabaseFacts | None:
    """None when not asked for (turned off, or an instance without a database)."""
    seconds = state.settings.instance_facts_timeout_seconds
    if seconds <= 0 or row.status not in WITH_DATABASE or not row.databasename:
        return None
    now = datetime.now(UTC)
    try:
        found = await database_facts(state.settings, row.databasename, seconds)
    except (InstanceManagerError, OSError) as exc:
        log.warning(
            "database facts not read", instance_id=row.id, database=row.databasename, error=str(exc)
        )
        return DatabaseFacts(read_at=now, unavailable=str(exc))
    if found is None:
        return DatabaseFacts(read_at=now, exists=False, online=False, sessions=0)
    return DatabaseFacts(
        read_at=now,
        exists=True,
        online=found.online,
        size_bytes=found.size_bytes,
        sessions=found.sessions,
    )
