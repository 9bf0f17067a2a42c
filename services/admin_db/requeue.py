"""Re-opening a failed job and sending its command again: what the orphan sweep, the requeue of a
dead letter (over HTTP and on the command line) and the requeue of a parked outbox row share."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from contracts.messages import (
    OUTCOMES,
    InstanceRequested,
    MaintenanceRequested,
    Message,
    Operation,
)
from services.admin_db import instances, jobs, outbox
from services.rules.states import JobStatus, JobType, outcome
from services.runtime.topology import (
    MAINTENANCE_EXCHANGE,
    MAINTENANCE_ROUTING_KEY,
    REQUESTS_EXCHANGE,
    instance_routing_key,
)

MAINTENANCE_TYPES = (JobType.RECONCILE.value, JobType.PRUNE.value)


async def redrive(conn: AsyncConnection, job: Any, correlation_id: str | None) -> None:
    """Publish the job's command again, through the outbox (same job id: idempotent steps):
    an instance command to its shard, a maintenance command to the scheduler's queue."""
    if job.type in MAINTENANCE_TYPES:
        await outbox.enqueue(
            conn,
            MaintenanceRequested.model_validate(job.command),
            exchange=MAINTENANCE_EXCHANGE,
            routing_key=MAINTENANCE_ROUTING_KEY,
            correlation_id=correlation_id,
        )
        return
    command = InstanceRequested.model_validate(job.command)
    await outbox.enqueue(
        conn,
        command,
        exchange=REQUESTS_EXCHANGE,
        routing_key=instance_routing_key(command.tenant, command.instance_id),
        correlation_id=correlation_id,
    )


class RequeueRefusedError(Exception):
    """The dead-lettered command's job cannot be re-opened."""


async def failed_and_current(
    conn: AsyncConnection, instance_id: int, job_id: uuid.UUID, operation: Operation
) -> tuple[Any, Any, str | None]:
    """The instance and job, locked, and why a requeue cannot re-open them (None: it can)."""
    instance = await instances.lock(conn, instance_id)
    job = await jobs.lock(conn, job_id)
    if instance is None or job is None:
        return instance, job, f"job {job_id} or its instance no longer exists"
    if instance.currentjobid != job.id:
        return instance, job, f"instance {instance.id} has moved on to job {instance.currentjobid}"
    failed_status, _ = outcome(operation, succeeded=False)
    if job.status != JobStatus.FAILED.value or instance.status != failed_status.value:
        return (
            instance,
            job,
            f"job {job.id} is {job.status} and instance {instance.id} is {instance.status}; "
            "only a failed job can be requeued",
        )
    return instance, job, None


async def reopen_and_redrive(conn: AsyncConnection, command: InstanceRequested) -> None:
    """Requeue a dead-lettered command after a fix: re-open its failed job and send it again."""
    operation = Operation(command.operation)
    instance, job, refused = await failed_and_current(
        conn, command.instance_id, command.job_id, operation
    )
    if refused is not None:
        raise RequeueRefusedError(refused)
    await jobs.reopen(conn, job.id, running=False, why="Requeued after being dead-lettered")
    await instances.reopen_operation(
        conn,
        instance.id,
        operation,
        started=False,
        new_name=command.new_name,
        new_database_name=command.new_database_name,
    )
    await redrive(conn, job, job.correlation_id)


async def reopen_for_event(conn: AsyncConnection, event: Message) -> bool:
    """Requeueing a dead-lettered outcome event: a job that failed because its outcome could
    not be recorded goes back to Running (its instance to the operation's pending status), so
    the event is applied when it arrives again. False when there is nothing to re-open."""
    if type(event) not in OUTCOMES:
        return False
    operation, _ = OUTCOMES[type(event)]
    instance, job, refused = await failed_and_current(
        conn, event.instance_id, event.job_id, operation
    )
    if refused is not None or job.command is None:
        return False
    command = InstanceRequested.model_validate(job.command)
    await jobs.reopen(
        conn, job.id, running=True, why="Outcome event requeued after being dead-lettered"
    )
    await instances.reopen_operation(
        conn,
        instance.id,
        operation,
        started=True,
        new_name=command.new_name,
        new_database_name=command.new_database_name,
    )
    return True
