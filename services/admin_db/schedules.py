"""Schedules in the admin database: create, read, pause, resume, unschedule, run history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row, case, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.admin_db.tables import db_instances, jobs, schedule_runs, schedules
from services.gateway.jobs import check_job
from services.gateway.problems import ProblemError, validation_problem
from services.gateway.schemas import DeleteInstanceParameters, RenameInstanceParameters
from services.rules.states import InstanceStatus, JobStatus
from services.rules.triggers import ScheduleState, anchored, first_fire
from services.runtime.settings import Settings
from services.scheduler.firing import RunOutcome
from services.scheduler.schemas import CreateSchedule, Schedule, ScheduleJob, ScheduleRun


def schedule_out(row: Row[Any]) -> Schedule:
    return Schedule(
        id=row.id,
        name=row.name,
        job=ScheduleJob(type=row.job_type, parameters=row.parameters),
        trigger=row.trigger,
        misfire_policy=row.misfire_policy,
        allow_concurrent=row.allow_concurrent,
        state=row.state,
        next_fire_time=row.next_fire_time,
        previous_fire_time=row.previous_fire_time,
        fire_count=row.fire_count,
        last_job_id=row.last_job_id,
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        paused_at=row.paused_at,
    )


def _not_found(schedule_id: uuid.UUID) -> ProblemError:
    return ProblemError(404, "Not found", f"no schedule with id {schedule_id}")


async def create_schedule(
    conn: AsyncConnection, settings: Settings, body: CreateSchedule, now: datetime
) -> Row[Any]:
    # What can be checked now is checked now; the rest (names taken, instance states) is
    # checked at each fire, as for an HTTP request, and a refusal is recorded as a failed run.
    params = check_job(settings, body.job.type, body.job.parameters, "job.parameters").params
    if isinstance(params, RenameInstanceParameters | DeleteInstanceParameters):
        # An instance that does not exist, or was deleted, would refuse every fire.
        status = await conn.scalar(
            select(db_instances.c.status).where(db_instances.c.id == params.id)
        )
        if status is None or status == InstanceStatus.DELETED.value:
            raise validation_problem(
                "job.parameters.id",
                f"no instance with id {params.id}"
                if status is None
                else f"instance {params.id} was deleted",
            )
    trigger = anchored(body.trigger, now)
    next_fire = first_fire(trigger, now)
    if next_fire is None:
        raise validation_problem("trigger", "never fires: it has no occurrence from now on")
    try:
        async with conn.begin_nested():
            row = (
                await conn.execute(
                    insert(schedules)
                    .values(
                        id=uuid.uuid4(),
                        name=body.name,
                        job_type=body.job.type.value,
                        parameters=params.model_dump(mode="json", by_alias=True),
                        trigger=trigger.model_dump(mode="json", by_alias=True),
                        misfire_policy=body.misfire_policy.value,
                        allow_concurrent=body.allow_concurrent,
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
        raise ProblemError(
            409,
            "Conflict",
            f"a schedule named {body.name!r} already exists",
            errors={"name": ["is taken"]},
        ) from None
    created: Row[Any] = row
    return created


async def get_schedule(conn: AsyncConnection, schedule_id: uuid.UUID) -> Row[Any]:
    row = (await conn.execute(select(schedules).where(schedules.c.id == schedule_id))).first()
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
    row = (
        await conn.execute(select(schedules).where(schedules.c.id == schedule_id).with_for_update())
    ).first()
    if row is None:
        raise _not_found(schedule_id)
    return row


async def _set(conn: AsyncConnection, schedule_id: uuid.UUID, **values: Any) -> Row[Any]:
    row = (
        await conn.execute(
            update(schedules)
            .where(schedules.c.id == schedule_id)
            .values(updated_at=func.now(), **values)
            .returning(schedules)
        )
    ).one()
    result: Row[Any] = row
    return result


async def pause_schedule(conn: AsyncConnection, schedule_id: uuid.UUID) -> Row[Any]:
    """Normal → Paused (waits for a fire in progress to commit); pausing again changes nothing."""
    row = await _locked(conn, schedule_id)
    if row.state == ScheduleState.PAUSED.value:
        return row
    if row.state != ScheduleState.NORMAL.value:
        raise ProblemError(
            409, "Conflict", f"schedule {schedule_id} is {row.state}: only a Normal one pauses"
        )
    return await _set(conn, schedule_id, state=ScheduleState.PAUSED.value, paused_at=func.now())


async def resume_schedule(conn: AsyncConnection, schedule_id: uuid.UUID) -> Row[Any]:
    """Paused (or Error) → Normal. Occurrences that passed meanwhile are misfires: the
    schedule's misfire policy decides at its next pass (when later than the threshold)."""
    row = await _locked(conn, schedule_id)
    if row.state == ScheduleState.NORMAL.value:
        return row
    if row.state == ScheduleState.COMPLETE.value:
        raise ProblemError(
            409, "Conflict", f"schedule {schedule_id} is Complete: it has no further occurrences"
        )
    return await _set(
        conn, schedule_id, state=ScheduleState.NORMAL.value, paused_at=None, error=None
    )


async def delete_schedule(conn: AsyncConnection, schedule_id: uuid.UUID) -> None:
    """Unschedule: the schedule and its run history go; the jobs it fired stay."""
    await _locked(conn, schedule_id)
    await conn.execute(delete(schedules).where(schedules.c.id == schedule_id))


async def list_runs(
    conn: AsyncConnection, schedule_id: uuid.UUID, offset: int, limit: int
) -> list[ScheduleRun]:
    await get_schedule(conn, schedule_id)
    r = schedule_runs.c
    outcome = case(
        (r.outcome == RunOutcome.REFUSED, JobStatus.FAILED.value),
        (
            (r.outcome == RunOutcome.FIRED) & jobs.c.status.is_not(None),
            jobs.c.status,
        ),
        else_=r.outcome,
    )
    rows = (
        await conn.execute(
            select(
                r.scheduled_fire_time, r.actual_fire_time, r.job_id, r.detail, outcome.label("o")
            )
            .select_from(schedule_runs.outerjoin(jobs, jobs.c.id == r.job_id))
            .where(r.schedule_id == schedule_id)
            .order_by(r.scheduled_fire_time.desc())
            .offset(offset)
            .limit(limit)
        )
    ).all()
    return [
        ScheduleRun(
            scheduled_fire_time=row.scheduled_fire_time,
            actual_fire_time=row.actual_fire_time,
            job_id=row.job_id,
            outcome=row.o,
            detail=row.detail,
        )
        for row in rows
    ]
