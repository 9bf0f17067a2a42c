"""Applying provisioner events to the admin database: one transaction per event, with the inbox
row that makes a redelivered event a no-op and the job check that makes a stale one a no-op."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts.messages import (
    InstanceCreated,
    InstanceCreateFailed,
    InstanceOperationProgress,
    InstanceOperationStarted,
    Message,
    message_type,
)
from services.runtime import crypto
from services.runtime.logging import get_logger
from services.runtime.states import InstanceStatus, JobStatus, is_terminal, on_started
from services.runtime.tables import db_instances, inbox, jobs, ods_instances

log = get_logger(__name__)

CONSUMER = "status"
Outcome = Literal["applied", "duplicate", "stale"]


async def claim_inbox(conn: AsyncConnection, message_id: str, kind: str) -> bool:
    """True the first time this message id is seen (in this transaction's view)."""
    result = await conn.execute(
        pg_insert(inbox)
        .values(
            consumer=CONSUMER, message_id=message_id, message_type=kind, processed_at=func.now()
        )
        .on_conflict_do_nothing()
        .returning(inbox.c.message_id)
    )
    return result.first() is not None


class StatusApplier:
    def __init__(self, encryption_key: bytes, connection_string: Callable[[str], str]) -> None:
        self._key = encryption_key
        self._connection_string = connection_string

    async def apply(self, conn: AsyncConnection, event: Message, message_id: str) -> Outcome:
        if not await claim_inbox(conn, message_id, message_type(event)):
            return "duplicate"
        instance = (
            await conn.execute(
                select(db_instances).where(db_instances.c.id == event.instance_id).with_for_update()
            )
        ).first()
        job = (
            await conn.execute(select(jobs).where(jobs.c.id == event.job_id).with_for_update())
        ).first()
        if instance is None or job is None:
            log.warning("event for an unknown instance or job; ignored")
            return "stale"
        if is_terminal(job.status) or instance.currentjobid != job.id:
            log.info("stale event ignored", job_status=job.status, event_type=type(event).__name__)
            return "stale"
        if isinstance(event, InstanceOperationStarted):
            await self._started(conn, instance, event)
        elif isinstance(event, InstanceOperationProgress):
            await self._job(
                conn, event, progress_message=event.message, progress_percent=event.percent
            )
        elif isinstance(event, InstanceCreated):
            await self._created(conn, instance, event)
        elif isinstance(event, InstanceCreateFailed):
            await self._finish(conn, event, InstanceStatus.ERROR, JobStatus.FAILED, event.reason)
        else:
            log.warning("event type not handled", event_type=type(event).__name__)
            return "stale"
        return "applied"

    async def _job(self, conn: AsyncConnection, event: Message, **values: Any) -> None:
        await conn.execute(
            update(jobs).where(jobs.c.id == event.job_id).values(heartbeat_at=func.now(), **values)
        )

    async def _instance(self, conn: AsyncConnection, event: Message, **values: Any) -> None:
        await conn.execute(
            update(db_instances)
            .where(db_instances.c.id == event.instance_id)
            .values(lastmodifieddate=func.now(), lastrefreshed=func.now(), **values)
        )

    async def _started(
        self, conn: AsyncConnection, instance: Any, event: InstanceOperationStarted
    ) -> None:
        await self._job(
            conn,
            event,
            status=JobStatus.RUNNING.value,
            started_at=func.coalesce(jobs.c.started_at, func.now()),
            attempts=jobs.c.attempts + 1,
            worker=event.worker,
            progress_message=f"Started (attempt {event.attempt})",
        )
        new_status = on_started(InstanceStatus(instance.status))
        if new_status != instance.status:
            await self._instance(conn, event, status=new_status.value)
        log.info("job running", attempt=event.attempt, worker=event.worker)

    async def _created(self, conn: AsyncConnection, instance: Any, event: InstanceCreated) -> None:
        encrypted = crypto.encrypt(self._connection_string(event.database_name), self._key)
        ods_id = await conn.scalar(
            insert(ods_instances)
            .values(name=instance.name, instancetype=None, connectionstring=encrypted)
            .returning(ods_instances.c.odsinstanceid)
        )
        await self._instance(
            conn,
            event,
            status=InstanceStatus.COMPLETED.value,
            odsinstanceid=ods_id,
            odsinstancename=instance.name,
            databasename=event.database_name,
            error=None,
        )
        await self._job(
            conn,
            event,
            status=JobStatus.COMPLETED.value,
            finished_at=func.now(),
            progress_message="Completed",
            progress_percent=100,
            error=None,
        )
        log.info("instance completed", ods_instance_id=ods_id, database_name=event.database_name)

    async def _finish(
        self,
        conn: AsyncConnection,
        event: Message,
        instance_status: InstanceStatus,
        job_status: JobStatus,
        reason: str,
    ) -> None:
        await self._instance(conn, event, status=instance_status.value, error=reason)
        await self._job(
            conn,
            event,
            status=job_status.value,
            finished_at=func.now(),
            progress_message=job_status.value,
            error=reason,
        )
        log.warning("job failed", reason=reason, instance_status=instance_status.value)
