"""Jobs accepted but not taken by any worker for a long time say why they may be waiting: every
accepted job ends in a terminal state or shows why it waits (a shard busy with earlier commands,
or no provisioner serving its tenant, whose command is then in the dead letters).

Run by the status service for its tenants and by the gateway for its own (a tenant the gateway
knows but the other services do not is the case nobody else could see)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog
from sqlalchemy import func, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.admin_db.tables import jobs
from services.rules.states import JobStatus
from services.runtime.logging import get_logger
from services.runtime.tenants import TenantDatabase

log = get_logger(__name__)

WAITING = "Waiting to start"


def waiting_message(tenant: str | None) -> str:
    where = f"tenant {tenant!r}" if tenant else "this instance manager"
    return (
        f"{WAITING}: no worker has taken it yet. Its queue may still be busy with earlier work; "
        f"if no provisioner (or scheduler) serves {where}, its command is in the dead letters "
        "(`just dead-letters list`): configure the service, then requeue it"
    )


async def flag_waiting_jobs(
    conn: AsyncConnection, *, threshold_seconds: float, tenant: str | None
) -> int:
    """Jobs still Pending and unclaimed after the threshold, whose progress says nothing more
    useful yet (a provisioner waiting for the instance's lock says so itself), say why they may
    be waiting. Returns how many were newly flagged."""
    result = await conn.execute(
        update(jobs)
        .where(jobs.c.status == JobStatus.PENDING.value)
        .where(jobs.c.claimed_at.is_(None))
        .where(jobs.c.created_at < func.now() - timedelta(seconds=threshold_seconds))
        .where(or_(jobs.c.progress_message.is_(None), jobs.c.progress_message == "Accepted"))
        .values(progress_message=waiting_message(tenant))
    )
    return int(result.rowcount or 0)


async def keep_flagging(db: TenantDatabase, threshold_seconds: float, interval: float) -> None:
    """Flag waiting jobs every `interval` seconds, for ever (a background task)."""
    if db.tenant is not None:
        structlog.contextvars.bind_contextvars(tenant=db.tenant)
    while True:
        try:
            async with db.engine.begin() as conn:
                flagged = await flag_waiting_jobs(
                    conn, threshold_seconds=threshold_seconds, tenant=db.tenant
                )
            if flagged:
                log.warning("jobs waiting to start", count=flagged)
        except Exception as exc:
            log.warning("could not look for waiting jobs; will try again", error=repr(exc))
        await asyncio.sleep(interval)
