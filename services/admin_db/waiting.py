"""Jobs accepted but not taken by any worker for a long time say why they may be waiting: every
accepted job ends in a terminal state or shows why it waits (a shard busy with earlier commands,
or no provisioner serving its tenant, whose command is then in the dead letters).

Run by the status service for its tenants and by the gateway for its own (a tenant the gateway
knows but the other services do not is the case nobody else could see)."""

from __future__ import annotations

import asyncio

import structlog

from services.admin_db import jobs
from services.admin_db.tenants import TenantDatabase
from services.runtime.logging import get_logger

log = get_logger(__name__)


def waiting_message(tenant: str | None) -> str:
    where = f"tenant {tenant!r}" if tenant else "this instance manager"
    return (
        f"{jobs.WAITING}: no worker has taken it yet. Its queue may still be busy with earlier "
        f"work; if no provisioner (or scheduler) serves {where}, its command is in the dead "
        "letters (`just dead-letters list`): configure the service, then requeue it"
    )


async def keep_flagging(db: TenantDatabase, threshold_seconds: float, interval: float) -> None:
    """Flag waiting jobs every `interval` seconds, for ever (a background task)."""
    if db.tenant is not None:
        structlog.contextvars.bind_contextvars(tenant=db.tenant)
    while True:
        try:
            async with db.engine.begin() as conn:
                flagged = await jobs.flag_waiting(
                    conn, threshold_seconds=threshold_seconds, message=waiting_message(db.tenant)
                )
            if flagged:
                log.warning("jobs waiting to start", count=flagged)
        except Exception as exc:
            log.warning("could not look for waiting jobs; will try again", error=repr(exc))
        await asyncio.sleep(interval)
