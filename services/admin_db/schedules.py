"""Schedules: the one module that writes `edfi_im.schedules` and `edfi_im.schedule_runs`:
create, pause, resume, unschedule, the runs and advances of a firing pass, pruning."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, case, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.admin_db.dialect import locked
from services.admin_db.tables import db_instances, jobs, schedule_runs, schedules
from services.rules.errors import ConflictError, InvalidError, NotFoundError
from services.rules.parameters import (
    DeleteInstanceParameters,
    NamingSettings,
    RenameInstanceParameters,
    check_job,
)
from services.rules.states import InstanceStatus, JobStatus, JobType
from services.rules.triggers import (
    MisfirePolicy,
    RunOutcome,
    ScheduleState,
    Trigger,
    anchored,
    first_fire,
)


def _not_found(schedule_id: uuid.UUID) -> NotFoundError:
    return NotFoundError(f"no schedule with id {schedule_id}")


async def create(
    conn: AsyncConnection,
    settings: NamingSettings,
    *,
    name: str,
    job_type: JobType,
    parameters: Any,
    trigger: Trigger,
    misfire_policy: MisfirePolicy,
    allow_concurrent: bool,
    now: datetime,
) -> Row[Any]:
    """A new schedule. What can be checked now is checked now (the job's parameters as an HTTP
    request's, the trigger's first occurrence, the instance a rename or delete names); the rest
    (names taken, instance states) at each fire, where a refusal is recorded as a failed run."""
    params = check_job(settings, job_type, parameters, "job.parameters").params
    anchored_trigger = anchored(trigger, now)
    next_fire = first_fire(anchored_trigger, now)
    if next_fire is None:
        raise InvalidError.field("trigger", "never fires: it has no occurrence from now on")
    instance_id = (
        params.id
        if isinstance(params, RenameInstanceParameters | DeleteInstanceParameters)
        else None
    )
    if instance_id is not None:
        status = await conn.scalar(
            select(db_instances.c.status).where(db_instances.c.id == instance_id)
        )
        if status is None or status == InstanceStatus.DELETED.value:
            raise InvalidError.field(
                "job.parameters.id",
                f"no instance with id {instance_id}"
                if status is None
                else f"instance {instance_id} was deleted",
            )
    try:
        async with conn.begin_nested():
            row: Row[Any] = (
                await conn.execute(
                    insert(schedules)
                    .values(
                        id=uuid.uuid4(),
                        name=name,
                        job_type=job_type.value,
                        parameters=params.model_dump(mode="json", by_alias=True),
                        trigger=anchored_trigger.model_dump(mode="json", by_alias=True),
                        misfire_policy=misfire_policy.value,
                        allow_concurrent=allow_concurrent,
                        state=ScheduleState.NORMAL.value,
                        next_fire_time=next_fire,
                        fire_count=0,
                        created_at=func.now(),
                        updated_at=func.now(),
                    )
                    .returning(schedules)
                )
            ).one()
    except IntegrityError:
        raise ConflictError(
            f"a schedule named {name!r} already exists", errors={"name": ["is taken"]}
        ) from None
    return row


async def get(conn: AsyncConnection, schedule_id: uuid.UUID) -> Row[Any]:
    row: Row[Any] | None = (
        await conn.execute(select(schedules).where(schedules.c.id == schedule_id))
    ).first()
    if row is None:
        raise _not_found(schedule_id)
    return row


async def list_schedules(
    conn: AsyncConnection, offset: int, limit: int, state: ScheduleState | None
) -> list[Row[Any]]:
    query = select(schedules).order_by(schedules.c.created_at, schedules.c.id)
    if state is not None:
        query = query.where(schedules.c.state == state.value)
    return list((await conn.execute(query.offset(offset).limit(limit))).all())


async def _locked(conn: AsyncConnection, schedule_id: uuid.UUID) -> Row[Any]:
    row: Row[Any] | None = (
        await conn.execute(
            locked(select(schedules).where(schedules.c.id == schedule_id), schedules)
        )
    ).first()
    if row is None:
        raise _not_found(schedule_id)
    return row


async def _set(conn: AsyncConnection, schedule_id: uuid.UUID, **values: Any) -> Row[Any]:
    row: Row[Any] = (
        await conn.execute(
            update(schedules)
            .where(schedules.c.id == schedule_id)
            .values(updated_at=func.now(), **values)
            .returning(schedules)
        )
    ).one()
    return row


async def pause(conn: AsyncConnection, schedule_id: uuid.UUID) -> Row[Any]:
    """Normal → Paused (waits for a fire in progress to commit); pausing again changes nothing."""
    row = await _locked(conn, schedule_id)
    if row.state == ScheduleState.PAUSED.value:
        return row
    if row.state != ScheduleState.NORMAL.value:
        raise ConflictError(f"schedule {schedule_id} is {row.state}: only a Normal one pauses")
    return await _set(conn, schedule_id, state=ScheduleState.PAUSED.value, paused_at=func.now())


async def resume(conn: AsyncConnection, schedule_id: uuid.UUID) -> Row[Any]:
    """Paused (or Error) → Normal. Occurrences that passed meanwhile are misfires: the
    schedule's misfire policy decides at its next pass (when later than the threshold)."""
    row = await _locked(conn, schedule_id)
    if row.state == ScheduleState.NORMAL.value:
        return row
    if row.state == ScheduleState.COMPLETE.value:
        raise ConflictError(f"schedule {schedule_id} is Complete: it has no further occurrences")
    return await _set(
        conn, schedule_id, state=ScheduleState.NORMAL.value, paused_at=None, error=None
    )


async def unschedule(conn: AsyncConnection, schedule_id: uuid.UUID) -> None:
    """The schedule and its run history go; the jobs it fired stay."""
    await _locked(conn, schedule_id)
    await conn.execute(delete(schedules).where(schedules.c.id == schedule_id))


async def runs(conn: AsyncConnection, schedule_id: uuid.UUID, offset: int, limit: int) -> list[Any]:
    """A schedule's runs, newest first, each with its outcome: a fired run's job status."""
    await get(conn, schedule_id)
    r = schedule_runs.c
    outcome = case(
        (r.outcome == RunOutcome.REFUSED, JobStatus.FAILED.value),
        (
            (r.outcome == RunOutcome.FIRED) & jobs.c.status.is_not(None),
            jobs.c.status,
        ),
        else_=r.outcome,
    )
    found = (
        await conn.execute(
            select(
                r.scheduled_fire_time,
                r.actual_fire_time,
                r.job_id,
                r.detail,
                outcome.label("outcome"),
            )
            .select_from(schedule_runs.outerjoin(jobs, jobs.c.id == r.job_id))
            .where(r.schedule_id == schedule_id)
            .order_by(r.scheduled_fire_time.desc())
            .offset(offset)
            .limit(limit)
        )
    ).all()
    return list(found)


# --- a firing pass -------------------------------------------------------------------------------


def due(batch: int, now: datetime) -> Any:
    """The due schedules, earliest first, locked (other replicas skip them)."""
    return locked(
        select(schedules)
        .where(schedules.c.state == ScheduleState.NORMAL.value)
        .where(schedules.c.next_fire_time <= now)
        .order_by(schedules.c.next_fire_time)
        .limit(batch),
        schedules,
        skip_locked=True,
    )


ADVANCE = (
    update(schedules)
    .where(schedules.c.id == bindparam("b_id"))
    .values(
        next_fire_time=bindparam("b_next"),
        previous_fire_time=bindparam("b_previous"),
        fire_count=schedules.c.fire_count + bindparam("b_fired"),
        last_job_id=bindparam("b_last_job"),
        state=bindparam("b_state"),
        updated_at=func.now(),
    )
)


async def record_fires(
    conn: AsyncConnection, runs_: list[dict[str, Any]], advances: list[dict[str, Any]]
) -> None:
    """A pass's runs and the schedules' advances, one statement each."""
    if runs_:
        await conn.execute(insert(schedule_runs), runs_)
    if advances:
        await conn.execute(ADVANCE, advances)


async def put_in_error(conn: AsyncConnection, schedule_id: uuid.UUID, reason: str) -> None:
    await _set(conn, schedule_id, state=ScheduleState.ERROR.value, error=reason)


async def prune_runs(conn: AsyncConnection, cutoff: Any) -> int:
    result = await conn.execute(
        delete(schedule_runs).where(schedule_runs.c.actual_fire_time < cutoff)
    )
    return int(result.rowcount or 0)
