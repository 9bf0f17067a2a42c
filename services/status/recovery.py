"""Nothing stuck: jobs whose worker died are re-driven through the outbox, and a dead-lettered
command fails its job visibly (seed 004's orphaned-job recovery; seed 002's lock expiry)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from contracts.messages import (
    OUTCOMES,
    InstanceCreated,
    InstanceDeleted,
    InstanceRenamed,
    InstanceRequested,
    Message,
    Operation,
    OperationFailed,
)
from services.admin_db import instances, jobs, outbox
from services.admin_db.requeue import (
    MAINTENANCE_TYPES,
    RequeueRefusedError,
    redrive,
)
from services.admin_db.requeue import failed_and_current as _failed_and_current
from services.rules.states import (
    JOB_TYPE,
    JobStatus,
    is_terminal,
)
from services.runtime import dberrors
from services.runtime.logging import get_logger
from services.runtime.metrics import ORPHAN_RECOVERIES

log = get_logger(__name__)

OPERATION_OF = {job_type.value: op for op, job_type in JOB_TYPE.items()}


async def fail_job(conn: AsyncConnection, job: Any, reason: str) -> None:
    """Fail a job and, for an instance operation, put its instance in the operation's failure
    status (caller holds locks). A maintenance job has no instance."""
    await jobs.fail(conn, job.id, reason)
    operation = OPERATION_OF.get(job.type)
    if operation is not None:
        await instances.fail_operation(conn, job.instance_id, job.id, operation, reason)


ApplyFact = Callable[[AsyncConnection, Message], Awaitable[object]]


def outcome_of_command(job: Any) -> Message:
    """The success outcome a job's command had once its last server step was done."""
    command = InstanceRequested.model_validate(job.command)
    about = {"job_id": job.id, "instance_id": command.instance_id, "tenant": command.tenant}
    if command.operation is Operation.CREATE:
        return InstanceCreated(**about, database_name=command.database_name)
    if command.operation is Operation.RENAME:
        return InstanceRenamed(
            **about,
            old_database_name=command.database_name,
            database_name=command.new_database_name or "",
            new_name=command.new_name or "",
        )
    return InstanceDeleted(**about, database_name=command.database_name, dropped=True)


async def record_fact(conn: AsyncConnection, job: Any, apply_fact: ApplyFact, silent: str) -> None:
    """A silent job whose last server step was done (its fence recorded it): the server has
    changed, so its outcome is recorded as the fact it is, and the job's history says so. A
    refusal of that record (EdFi_Admin's constraints) fails the job with the reason."""
    fact = outcome_of_command(job)
    try:
        async with conn.begin_nested():
            await apply_fact(conn, fact)
    except Exception as exc:
        if dberrors.is_transient(exc):
            raise
        await record_refusal(conn, fact, dberrors.describe(exc), None)
        return
    done_at = job.server_done_at.isoformat(timespec="seconds")
    await jobs.note(
        conn,
        job.id,
        f"Recorded from its command: its last step was done on the ODS server at {done_at}, "
        f"then {silent}",
    )


async def recover_orphans(
    conn: AsyncConnection,
    *,
    threshold_seconds: float,
    max_recoveries: int,
    apply_fact: ApplyFact | None = None,
) -> list[uuid.UUID]:
    """Re-drive Running jobs whose heartbeat is older than the threshold; fail those recovered
    `max_recoveries` times already; record the outcome of those whose last server step is
    known to be done (the server has changed: failing them would make the records lie).
    Replicas skip each other's rows, and a job inside its fence is skipped (SKIP LOCKED)."""
    stale = await jobs.stale_running(conn, threshold_seconds)
    handled = []
    for job in stale:
        silent = f"no heartbeat from worker {job.worker or '?'} for over {threshold_seconds:g}s"
        maintenance = job.type in MAINTENANCE_TYPES
        current = True  # a maintenance job has no instance to have moved on
        if not maintenance:
            instance = await instances.lock(conn, job.instance_id)
            current = instance is not None and instance.currentjobid == job.id
        if current and job.server_done_at is not None and apply_fact is not None:
            await record_fact(conn, job, apply_fact, silent)
            ORPHAN_RECOVERIES.labels("recorded").inc()
            log.warning(
                "silent job's outcome recorded from its command",
                job_id=str(job.id),
                instance_id=job.instance_id,
            )
        elif not current or job.command is None:
            await jobs.fail(conn, job.id, silent)
        elif job.recoveries >= max_recoveries:
            reason = (
                f"{silent}; recovered {job.recoveries} time(s) already, giving up "
                f"(see the {'scheduler' if maintenance else 'provisioner'} logs for this job)"
            )
            await fail_job(conn, job, reason)
            ORPHAN_RECOVERIES.labels("failed").inc()
            log.error("orphaned job failed", job_id=str(job.id), reason=reason)
        else:
            await jobs.mark_redriven(
                conn,
                job.id,
                f"Re-driven: {silent} (recovery {job.recoveries + 1} of {max_recoveries})",
            )
            await redrive(conn, job, job.correlation_id)
            ORPHAN_RECOVERIES.labels("re-driven").inc()
            log.warning(
                "orphaned job re-driven",
                job_id=str(job.id),
                instance_id=job.instance_id,
                recovery=job.recoveries + 1,
            )
        handled.append(job.id)
    return handled


async def fail_dead_lettered(
    conn: AsyncConnection, job_id: uuid.UUID, instance_id: int, why: str, message_id: str | None
) -> bool:
    """A command reached the dead-letter queue: fail its job unless it already ended."""
    await instances.lock(conn, instance_id)
    job = await jobs.lock(conn, job_id)
    if job is None or is_terminal(job.status):
        return False
    reason = (
        f"the command was dead-lettered ({why}); fix the cause, then requeue it with "
        f"`just dead-letters requeue {message_id or '<message id>'}`"
    )
    await fail_job(conn, job, reason)
    log.error("dead-lettered command failed its job", job_id=str(job_id), reason=reason)
    return True


def requeue_hint(message_id: str | None) -> str:
    return (
        "`just dead-letters requeue --queue status.dead "
        f"{message_id or '<message id>'}` once the cause is fixed"
    )


def refusal_reason(event: Message, meaning: str, message_id: str | None) -> str:
    """What a job's error says when EdFi_Admin refused to record the outcome the server has."""
    requeue = requeue_hint(message_id)
    if isinstance(event, InstanceCreated):
        return (
            f"the database {event.database_name!r} was created on the ODS server (marked as this "
            f"system's, for instance {event.instance_id}), but recording it in EdFi_Admin failed: "
            f"{meaning}. Delete the instance to drop the database, or requeue the event with "
            f"{requeue}"
        )
    if isinstance(event, InstanceRenamed):
        return (
            f"the database was renamed from {event.old_database_name!r} to "
            f"{event.database_name!r} on the ODS server, but recording it in EdFi_Admin failed: "
            f"{meaning}. dbo.odsinstances still names the old database: requeue the event with "
            f"{requeue}"
        )
    if isinstance(event, InstanceDeleted):
        gone = "was dropped from" if event.dropped else "is gone from"
        return (
            f"the database {event.database_name!r} {gone} the ODS server, but removing the "
            f"instance's dbo rows failed: {meaning}. Delete the instance again, or requeue the "
            f"event with {requeue}"
        )
    if isinstance(event, OperationFailed):
        return f"{event.reason}; recording this failure also failed: {meaning}"
    return f"recording the job's progress failed: {meaning}"


async def record_refusal(
    conn: AsyncConnection, event: Message, meaning: str, message_id: str | None
) -> str | None:
    """An outcome EdFi_Admin refuses to record (a foreign key, a unique index, a value too
    long...): the job fails and the instance takes the operation's failure status at once, with
    the reason; what the server now has is recorded (a renamed database's new name), so a later
    delete or reconcile finds it. Returns the reason, or None when the job has moved on or the
    event is not an outcome (its progress is only lost, not the job)."""
    if type(event) not in OUTCOMES:
        return None
    instance = await instances.lock(conn, event.instance_id)
    job = await jobs.lock(conn, event.job_id)
    if job is None or is_terminal(job.status):
        return None
    if instance is None or instance.currentjobid != job.id:
        return None
    reason = refusal_reason(event, meaning, message_id)
    await fail_job(conn, job, reason)
    if isinstance(event, InstanceRenamed):
        await instances.record_database(conn, event.instance_id, event.database_name)
    return reason


async def requeue_parked(conn: AsyncConnection, outbox_id: int) -> str:
    """A parked outbox row back in line, once the cause is fixed: its job (failed when it was
    parked) is re-opened, and the relay publishes the row again."""
    row = await outbox.unpark(conn, outbox_id)
    if row is None:
        raise RequeueRefusedError(f"no parked outbox row {outbox_id}")
    body = dict(row.body)
    if "instance_id" not in body:
        job = await jobs.lock(conn, uuid.UUID(str(body["job_id"])))
        if job is not None and job.status == JobStatus.FAILED.value:
            await jobs.reopen(conn, job.id, running=False, why="Its parked command was requeued")
        return f"outbox row {outbox_id} requeued"
    command = InstanceRequested.model_validate(body)
    instance, job, refused = await _failed_and_current(
        conn, command.instance_id, command.job_id, Operation(command.operation)
    )
    if refused is None:
        await jobs.reopen(conn, job.id, running=False, why="Its parked command was requeued")
        await instances.reopen_operation(
            conn,
            instance.id,
            Operation(command.operation),
            started=False,
            new_name=command.new_name,
            new_database_name=command.new_database_name,
        )
        return f"outbox row {outbox_id} requeued; job {job.id} re-opened"
    return f"outbox row {outbox_id} requeued ({refused})"
