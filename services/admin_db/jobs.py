"""The jobs table: the one module that writes `edfi_im.jobs`. Every transition of a job is one
named function here; callers hold the transaction (a job's transition commits with the other
rows of its unit of work: its instance, its outbox message, its inbox row)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Row,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.admin_db.dialect import (
    ENGINE_SPECIFIC,
    CteWrite,
    ago,
    execute_along,
    locked,
    returned_a_row,
    row_where,
)
from services.admin_db.engine import alone, begun, unit_of_work
from services.admin_db.tables import db_instances, jobs
from services.rules.states import TERMINAL_JOB_STATUSES, Claimed, JobStatus, is_terminal

TERMINAL = [s.value for s in TERMINAL_JOB_STATUSES]

WAITING = "Waiting to start"

# A new job, Pending, with the command that carries it out (to send it again later), as a CTE
# that the outbox's INSERT of that command carries (services/admin_db/outbox.py `add(…,
# along=…)`): one statement on PostgreSQL; the job's INSERT on its own before it elsewhere.
# `new_job_with`: the same, inserted only with its instance (instances.add_pending_if_free).
_J = jobs.c


def _new_job_values() -> dict[str, Any]:
    """A new job's columns: Pending, its values bound (`j_…`)."""
    return {
        "id": bindparam("j_id", type_=_J.id.type),
        "type": bindparam("j_type", type_=_J.type.type),
        "instance_id": bindparam("j_instance_id", type_=_J.instance_id.type),
        "status": JobStatus.PENDING.value,
        "progress_message": "Accepted",
        "progress_percent": 0,
        "attempts": 0,
        "created_at": func.now(),
        "recoveries": 0,
        "correlation_id": bindparam("j_correlation_id", type_=_J.correlation_id.type),
        "data": bindparam("j_data", type_=_J.data.type),
        "command": bindparam("j_command", type_=_J.command.type),
        "schedule_id": bindparam("j_schedule_id", type_=_J.schedule_id.type),
    }


NEW_JOB = insert(jobs).values(**_new_job_values()).cte("new_job")


@functools.cache
def new_job_with(row: Any) -> Any:
    """NEW_JOB as a CTE that inserts only when `row` (another CTE, an INSERT … RETURNING) has
    returned a row: the job of an instance written in the same statement, or none with it."""
    return (
        insert(jobs)
        .from_select(*row_where(jobs, _new_job_values(), returned_a_row(row)))
        .cte("new_job")
    )


def new_job(
    *,
    job_id: uuid.UUID,
    job_type: str,
    instance_id: int | None,
    data: dict[str, Any],
    command: dict[str, Any],
    correlation_id: str,
    schedule_id: uuid.UUID | None,
) -> CteWrite:
    """A new job, Pending, for a statement to carry: (`NEW_JOB`, its values), the values also
    those of `new_job_with`."""
    return NEW_JOB, {
        "j_id": job_id,
        "j_type": job_type,
        "j_instance_id": instance_id,
        "j_correlation_id": correlation_id,
        "j_data": data,
        "j_command": command,
        "j_schedule_id": schedule_id,
    }


# The statements of the hot paths (each event applied, each claim and fence), built once with
# bound parameters (`p_…`): a call binds values only; building a statement and its cache key
# costs more CPU here than sending it.
_ID = bindparam("p_id", type_=jobs.c.id.type)
_LOCK = locked(select(jobs).where(jobs.c.id == _ID), jobs)
_LOCK_STATUS = locked(select(jobs.c.status, jobs.c.instance_id).where(jobs.c.id == _ID), jobs)
_CURRENT = select(db_instances.c.currentjobid).where(
    db_instances.c.id == bindparam("p_instance_id", type_=db_instances.c.id.type)
)
_MARK_RUNNING = (
    update(jobs)
    .where(jobs.c.id == _ID)
    .values(
        status=JobStatus.RUNNING.value,
        started_at=func.coalesce(jobs.c.started_at, func.now()),
        attempts=jobs.c.attempts + 1,
        worker=bindparam("p_worker", type_=jobs.c.worker.type),
        heartbeat_at=func.now(),
        progress_message=bindparam("p_message", type_=jobs.c.progress_message.type),
    )
)
_PROGRESS = (
    update(jobs)
    .where(jobs.c.id == _ID)
    .values(
        heartbeat_at=func.now(),
        progress_message=bindparam("p_message", type_=jobs.c.progress_message.type),
        progress_percent=bindparam("p_percent", type_=jobs.c.progress_percent.type),
    )
)
# A job still Pending when its outcome comes ran without a Started (it ended within the
# provisioner's progress delay): its start is recorded with its end, from its claim.
_STILL_PENDING = jobs.c.status == JobStatus.PENDING.value
_FINISH = (
    update(jobs)
    .where(jobs.c.id == _ID)
    .values(
        status=bindparam("p_status", type_=jobs.c.status.type),
        started_at=func.coalesce(jobs.c.started_at, jobs.c.claimed_at, func.now()),
        attempts=case((_STILL_PENDING, jobs.c.attempts + 1), else_=jobs.c.attempts),
        worker=case(
            (_STILL_PENDING, bindparam("p_worker", type_=jobs.c.worker.type)),
            else_=jobs.c.worker,
        ),
        finished_at=func.now(),
        heartbeat_at=func.now(),
        progress_message=bindparam("p_message", type_=jobs.c.progress_message.type),
        progress_percent=bindparam("p_percent", type_=jobs.c.progress_percent.type),
        error=bindparam("p_error", type_=jobs.c.error.type),
    )
    .returning(jobs.c.type, jobs.c.status, jobs.c.created_at, jobs.c.finished_at)
)
_CLAIM = (
    update(jobs)
    .where(jobs.c.id == _ID)
    .where(jobs.c.claimed_at.is_(None))
    .values(claimed_at=func.now())
)
_SERVER_DONE = update(jobs).where(jobs.c.id == _ID).values(server_done_at=func.now())


# --- reads that lock -----------------------------------------------------------------------------


async def lock(conn: AsyncConnection, job_id: uuid.UUID) -> Row[Any] | None:
    """The job's row, locked for the rest of the transaction (after its instance's, if any)."""
    row: Row[Any] | None = (await conn.execute(_LOCK, {"p_id": job_id})).first()
    return row


async def stale_running(conn: AsyncConnection, threshold_seconds: float) -> list[Row[Any]]:
    """Running jobs silent for longer than the threshold, locked; rows another transaction
    holds (another sweeper, a worker inside its fence) are skipped. A job claimed by its worker
    but still Pending counts as running since its claim (its Started waits out the progress
    delay: a worker that died or froze within it left the job so)."""
    return list(
        (
            await conn.execute(
                locked(
                    select(jobs)
                    .where(
                        or_(
                            jobs.c.status == JobStatus.RUNNING.value,
                            and_(
                                jobs.c.status == JobStatus.PENDING.value,
                                jobs.c.claimed_at.is_not(None),
                            ),
                        )
                    )
                    .where(
                        func.coalesce(
                            jobs.c.heartbeat_at,
                            jobs.c.started_at,
                            jobs.c.claimed_at,
                            jobs.c.created_at,
                        )
                        < ago(threshold_seconds)
                    )
                    .order_by(jobs.c.heartbeat_at)
                    .limit(100),
                    jobs,
                    skip_locked=True,
                )
            )
        ).all()
    )


# --- transitions ---------------------------------------------------------------------------------


async def _set(conn: AsyncConnection, job_id: uuid.UUID, **values: Any) -> None:
    await conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))


async def mark_running(
    conn: AsyncConnection,
    job_id: uuid.UUID,
    *,
    worker: str | None,
    attempt: int,
    along: CteWrite | None = None,
) -> None:
    """A worker began (or began again) the job's work. `along`: another write (e.g.
    `instances.started_along`) sent in the same statement on PostgreSQL (`execute_along`)."""
    values = {"p_id": job_id, "p_worker": worker, "p_message": f"Started (attempt {attempt})"}
    await execute_along(conn, _MARK_RUNNING, values, along)


async def report_progress(
    conn: AsyncConnection, job_id: uuid.UUID, message: str, percent: int | None = None
) -> None:
    """A step, or the heartbeat that repeats it."""
    await conn.execute(_PROGRESS, {"p_id": job_id, "p_message": message, "p_percent": percent})


async def record_retry(conn: AsyncConnection, job_id: uuid.UUID, error: str, note: str) -> None:
    """A try failed transiently; the job stays as it is, showing the tries and the last error."""
    await _set(
        conn,
        job_id,
        heartbeat_at=func.now(),
        attempts=jobs.c.attempts + 1,
        error=error,
        progress_message=note,
    )


async def finish(
    conn: AsyncConnection, job_id: uuid.UUID, *, reason: str | None, worker: str | None = None
) -> Row[Any] | None:
    """The job's outcome: Completed without a reason, Failed with one. Returns its type, status
    and times as they now are (for the metrics, counted once the transaction has committed).
    A job still Pending (no Started came: the operation ended within the provisioner's progress
    delay) also records its start as a Started would have (the time of its claim, one attempt
    more, the `worker` that ran it)."""
    succeeded = reason is None
    finished: Row[Any] | None = (
        await conn.execute(
            _FINISH,
            {
                "p_id": job_id,
                "p_status": (JobStatus.COMPLETED if succeeded else JobStatus.FAILED).value,
                "p_message": JobStatus.COMPLETED.value if succeeded else (reason or "")[:500],
                "p_percent": 100 if succeeded else None,
                "p_error": reason,
                "p_worker": worker,
            },
        )
    ).first()
    return finished


async def fail(conn: AsyncConnection, job_id: uuid.UUID, reason: str) -> None:
    """The job fails with the reason (given up, dead-lettered, refused): no outcome came."""
    await _set(
        conn,
        job_id,
        status=JobStatus.FAILED.value,
        finished_at=func.now(),
        error=reason,
        progress_message=reason[:500],
    )


async def mark_redriven(conn: AsyncConnection, job_id: uuid.UUID, note: str) -> None:
    """Its worker fell silent: its command goes out again (one more recovery)."""
    await _set(
        conn,
        job_id,
        recoveries=jobs.c.recoveries + 1,
        heartbeat_at=func.now(),
        progress_message=note,
    )


async def note(conn: AsyncConnection, job_id: uuid.UUID, message: str) -> None:
    """What the job's history should say, beside its status (e.g. how its outcome was known)."""
    await _set(conn, job_id, progress_message=message[:500])


async def reopen(conn: AsyncConnection, job_id: uuid.UUID, *, running: bool, why: str) -> None:
    """A failed job open again: Pending for its command to be sent again, or Running for its
    outcome event to be applied when it comes back."""
    await _set(
        conn,
        job_id,
        status=(JobStatus.RUNNING if running else JobStatus.PENDING).value,
        finished_at=None,
        error=None,
        heartbeat_at=func.now() if running else None,
        progress_message=why,
    )


async def cancel(conn: AsyncConnection, job_id: uuid.UUID) -> Row[Any]:
    """A Pending job that no worker claimed ends Cancelled."""
    row: Row[Any] = (
        await conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(
                status=JobStatus.CANCELLED.value,
                finished_at=func.now(),
                progress_message="Cancelled before it started",
            )
            .returning(jobs)
        )
    ).one()
    return row


async def _current(conn: AsyncConnection, job_id: uuid.UUID, instance_id: int | None) -> bool:
    if instance_id is None:
        return True
    current = await conn.scalar(_CURRENT, {"p_instance_id": instance_id})
    return bool(current == job_id)


def _claimed(status: str, current: uuid.UUID | None, job_id: uuid.UUID, first: bool) -> Claimed:
    if status == JobStatus.CANCELLED.value:
        return Claimed.CANCELLED
    if is_terminal(status) or current != job_id:
        return Claimed.ENDED
    return Claimed.CLAIMED if first else Claimed.RESUMED


@functools.cache
def _claim_statement() -> Any:
    """The claim as one statement (PostgreSQL): the job's instance and the job locked (FOR
    UPDATE OF both, instance first as every writer locks them: PostgreSQL locks a statement's
    row marks in the order of its FROM list, and reads both rows' newest versions once it holds
    them), and `claimed_at` stamped, if not yet, when the job may be worked on. Returns the
    job's status and its instance's current job; no row when either is missing."""
    i, j = db_instances, jobs
    held = (
        select(j.c.id, j.c.status, i.c.currentjobid)
        .select_from(i.join(j, j.c.instance_id == i.c.id))
        .where(j.c.id == _ID)
        .with_for_update(of=[i, j])
        .cte("held")
    )
    stamped = (
        update(j)
        .where(j.c.id == held.c.id)
        .where(j.c.claimed_at.is_(None))
        .where(held.c.currentjobid == held.c.id)
        .where(held.c.status.not_in(TERMINAL))
        .values(claimed_at=func.now())
        .returning(j.c.id)
        .cte("stamped")
    )
    return select(
        held.c.status, held.c.currentjobid, exists(select(stamped.c.id)).label("stamped")
    ).execution_options(**ENGINE_SPECIFIC)


async def claim(engine: AsyncEngine, job_id: uuid.UUID) -> Claimed:
    """A worker takes the job before working on it (the gateway's cancel takes the same row
    lock): a cancelled job, one that has ended (given up, failed, done) or that is no longer its
    instance's, is skipped; once claimed it can no longer be cancelled. RESUMED: an earlier
    attempt had claimed it (a redelivered or re-driven command).

    On PostgreSQL one statement on its own (one round trip instead of BEGIN, two reads, the
    stamp and COMMIT); sent again if it met a connection the server had ended, which is safe: a
    second run stamps nothing more and answers the same. A job with no instance row (a command
    sent by hand) takes the general path."""
    if engine.dialect.name == "postgresql":
        rows = await alone(engine, _claim_statement(), {"p_id": job_id})
        if rows:
            return _claimed(rows[0].status, rows[0].currentjobid, job_id, rows[0].stamped)

    async def work(conn: AsyncConnection) -> Claimed:
        job = (await conn.execute(_LOCK_STATUS, {"p_id": job_id})).first()
        if job is None:
            return Claimed.CLAIMED  # not recorded here at all: a command sent by hand
        # An ended job (cancelled included) is skipped whatever its instance's current job.
        ended = is_terminal(job.status)
        current = job_id if not ended and await _current(conn, job_id, job.instance_id) else None
        claimed = _claimed(job.status, current, job_id, first=True)
        if claimed is Claimed.CLAIMED:
            stamped = await conn.execute(_CLAIM, {"p_id": job_id})
            return Claimed.CLAIMED if stamped.rowcount else Claimed.RESUMED
        return claimed

    return await unit_of_work(engine, work)


@functools.cache
def _fence_statement() -> Any:
    """On PostgreSQL, the fence's entry in one statement: the job locked (an UPDATE's row lock,
    which the orphan sweep's SKIP LOCKED passes over), whether it may still act (not ended, by
    its status as it is once locked, and still its instance's current job, read as of the
    statement's start: an instance moves on to another job only once this one has ended), and
    if so the server step recorded as done. The record is committed only if the step then is:
    anything raised inside the fence rolls it back. `now()` is the transaction's start wherever
    in it the stamp is made. Returns `may_act` (NULL counts as no), the one rule for both."""
    i, j = db_instances, jobs
    current = select(i.c.currentjobid).where(i.c.id == j.c.instance_id).scalar_subquery()
    may_act = j.c.status.not_in(TERMINAL) & (j.c.instance_id.is_(None) | (current == j.c.id))
    return (
        update(j)
        .where(j.c.id == _ID)
        .values(server_done_at=case((may_act, func.now()), else_=j.c.server_done_at))
        .returning(may_act.label("may_act"))
        .execution_options(**ENGINE_SPECIFIC)
    )


@asynccontextmanager
async def fence(engine: AsyncEngine, job_id: uuid.UUID) -> AsyncIterator[bool]:
    """Around the step that changes the server for good: the job's row stays locked for the
    step's length (the orphan sweep skips it meanwhile), the step is taken only if the job may
    still act (yields False otherwise), and once it is done the job records so: on PostgreSQL
    the record is made by the entry's statement and committed only if nothing was raised inside
    (the COMMIT follows the step at once); elsewhere it is written after the step."""

    async def lock_job(conn: AsyncConnection) -> bool | None:
        if conn.dialect.name == "postgresql":
            # One statement: the job locked, whether it may act, and if so its step recorded,
            # kept only if the step is done (above).
            held = (await conn.execute(_fence_statement(), {"p_id": job_id})).first()
            if held is None:  # a command sent by hand: nothing recorded to fence
                return None
            return bool(held.may_act)
        job = (await conn.execute(_LOCK_STATUS, {"p_id": job_id})).first()
        if job is None:
            return None
        return not is_terminal(job.status) and await _current(conn, job_id, job.instance_id)

    async with begun(engine, lock_job) as (conn, live):
        yield live is not False
        if live and conn.dialect.name != "postgresql":
            await conn.execute(_SERVER_DONE, {"p_id": job_id})


async def claim_maintenance(engine: AsyncEngine, job_id: uuid.UUID, worker: str) -> str | None:
    """A maintenance worker takes its job: None when it may run it, else why not."""
    async with engine.begin() as conn:
        job = await lock(conn, job_id)
        if job is None:
            return "unknown job"
        if job.status in TERMINAL:
            return f"already {job.status}"
        await _set(
            conn,
            job_id,
            status=JobStatus.RUNNING.value,
            claimed_at=func.coalesce(jobs.c.claimed_at, func.now()),
            started_at=func.coalesce(jobs.c.started_at, func.now()),
            heartbeat_at=func.now(),
            attempts=jobs.c.attempts + 1,
            worker=worker,
            progress_message="Running",
            progress_percent=10,
        )
    return None


async def finish_maintenance(
    engine: AsyncEngine, job_id: uuid.UUID, **values: Any
) -> Row[Any] | None:
    """The outcome of a maintenance job still Running (its type, status and times)."""
    async with engine.begin() as conn:
        done: Row[Any] | None = (
            await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .where(jobs.c.status == JobStatus.RUNNING.value)
                .values(finished_at=func.now(), heartbeat_at=func.now(), **values)
                .returning(jobs.c.type, jobs.c.status, jobs.c.created_at, jobs.c.finished_at)
            )
        ).first()
    return done


async def flag_waiting(conn: AsyncConnection, *, threshold_seconds: float, message: str) -> int:
    """Jobs still Pending and unclaimed after the threshold, whose progress says nothing more
    useful yet (a provisioner waiting for the instance's lock says so itself), say why they may
    be waiting. Returns how many were newly flagged."""
    result = await conn.execute(
        update(jobs)
        .where(jobs.c.status == JobStatus.PENDING.value)
        .where(jobs.c.claimed_at.is_(None))
        .where(jobs.c.created_at < ago(threshold_seconds))
        .where(or_(jobs.c.progress_message.is_(None), jobs.c.progress_message == "Accepted"))
        .values(progress_message=message)
    )
    return int(result.rowcount or 0)


async def prune(conn: AsyncConnection, cutoff: datetime | Any, keep: list[Any]) -> int:
    """Delete finished jobs older than the cutoff, except those `keep` selects."""
    statement = delete(jobs).where(jobs.c.status.in_(TERMINAL)).where(jobs.c.finished_at < cutoff)
    for kept in keep:
        statement = statement.where(jobs.c.id.not_in(kept))
    result = await conn.execute(statement)
    return int(result.rowcount or 0)


def instance_of(job_id: uuid.UUID) -> Any:
    """The statement that reads a job's instance id (no lock)."""
    return select(jobs.c.instance_id).where(jobs.c.id == job_id)
