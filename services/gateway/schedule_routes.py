"""`/v2/schedules`: Quartz-style schedules that fire jobs through the same outbox."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import TypeAdapter
from sqlalchemy import Row

from services.admin_db import schedules as store
from services.gateway.routes import PROBLEM, Limit, Offset, page_limit
from services.gateway.schedule_schemas import CreateSchedule, Schedule, ScheduleJob, ScheduleRun
from services.gateway.state import request_tenant
from services.rules.triggers import MisfirePolicy, ScheduleState, Trigger, expected_next_fire
from services.runtime.logging import get_logger
from services.runtime.settings import Settings

log = get_logger(__name__)
router = APIRouter(prefix="/v2/schedules", tags=["schedules"])


TRIGGER: TypeAdapter[Trigger] = TypeAdapter(Trigger)


def _next_fire(row: Row[Any], settings: Settings) -> datetime | None:
    """The stored occurrence, or for a Normal schedule whose occurrence has passed (just
    resumed, or the scheduler behind) when it will really fire: never a time already past."""
    if row.state != ScheduleState.NORMAL.value or row.next_fire_time is None:
        return row.next_fire_time  # type: ignore[no-any-return]
    return expected_next_fire(
        TRIGGER.validate_python(row.trigger),
        row.next_fire_time,
        datetime.now(UTC),
        MisfirePolicy(row.misfire_policy),
        timedelta(seconds=settings.misfire_threshold_seconds),
    )


def schedule_out(row: Row[Any], settings: Settings) -> Schedule:
    return Schedule(
        id=row.id,
        name=row.name,
        job=ScheduleJob(type=row.job_type, parameters=row.parameters),
        trigger=row.trigger,
        misfire_policy=row.misfire_policy,
        allow_concurrent=row.allow_concurrent,
        state=row.state,
        next_fire_time=_next_fire(row, settings),
        previous_fire_time=row.previous_fire_time,
        fire_count=row.fire_count,
        last_job_id=row.last_job_id,
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        paused_at=row.paused_at,
    )


@router.post(
    "",
    status_code=201,
    response_model=Schedule,
    responses={409: PROBLEM, 422: PROBLEM},
    summary="Schedule a job: cron (Quartz or standard), fixed interval, or one time",
)
async def create_schedule(body: CreateSchedule, request: Request, response: Response) -> Schedule:
    state = request_tenant(request)
    async with state.engine.begin() as conn:
        row = await store.create(
            conn,
            state.settings,
            name=body.name,
            job_type=body.job.type,
            parameters=body.job.parameters,
            trigger=body.trigger,
            misfire_policy=body.misfire_policy,
            allow_concurrent=body.allow_concurrent,
            now=datetime.now(UTC),
        )
    log.info(
        "schedule created",
        schedule_id=str(row.id),
        schedule=row.name,
        job_type=row.job_type,
        next_fire_time=row.next_fire_time.isoformat() if row.next_fire_time else None,
    )
    response.headers["Location"] = f"/v2/schedules/{row.id}"
    return schedule_out(row, state.settings)


@router.get("", response_model=list[Schedule], responses={422: PROBLEM})
async def list_schedules(
    request: Request,
    offset: Offset = 0,
    limit: Limit = 25,
    state: Annotated[ScheduleState | None, Query(description="Only this state")] = None,
) -> list[Schedule]:
    gateway = request_tenant(request)
    async with gateway.engine.connect() as conn:
        rows = await store.list_schedules(conn, offset, page_limit(gateway, limit), state)
    return [schedule_out(r, gateway.settings) for r in rows]


@router.get("/{schedule_id}", response_model=Schedule, responses={404: PROBLEM})
async def get_schedule(schedule_id: uuid.UUID, request: Request) -> Schedule:
    state = request_tenant(request)
    async with state.engine.connect() as conn:
        return schedule_out(await store.get(conn, schedule_id), state.settings)


@router.post(
    "/{schedule_id}/pause",
    response_model=Schedule,
    responses={404: PROBLEM, 409: PROBLEM},
    summary="Stop firing until resumed",
)
async def pause_schedule(schedule_id: uuid.UUID, request: Request) -> Schedule:
    state = request_tenant(request)
    async with state.engine.begin() as conn:
        row = await store.pause(conn, schedule_id)
    log.info("schedule paused", schedule_id=str(schedule_id))
    return schedule_out(row, state.settings)


@router.post(
    "/{schedule_id}/resume",
    response_model=Schedule,
    responses={404: PROBLEM, 409: PROBLEM},
    summary="Fire again; occurrences missed meanwhile follow the misfire policy",
)
async def resume_schedule(schedule_id: uuid.UUID, request: Request) -> Schedule:
    state = request_tenant(request)
    async with state.engine.begin() as conn:
        row = await store.resume(conn, schedule_id)
    log.info("schedule resumed", schedule_id=str(schedule_id))
    return schedule_out(row, state.settings)


@router.delete(
    "/{schedule_id}",
    status_code=204,
    responses={404: PROBLEM},
    summary="Unschedule: the schedule and its history go; its jobs stay",
)
async def delete_schedule(schedule_id: uuid.UUID, request: Request) -> Response:
    async with request_tenant(request).engine.begin() as conn:
        await store.unschedule(conn, schedule_id)
    log.info("schedule deleted", schedule_id=str(schedule_id))
    return Response(status_code=204)


@router.get(
    "/{schedule_id}/runs",
    response_model=list[ScheduleRun],
    responses={404: PROBLEM, 422: PROBLEM},
    summary="Fire history, newest first: occurrence, actual time, job, outcome",
)
async def list_runs(
    schedule_id: uuid.UUID, request: Request, offset: Offset = 0, limit: Limit = 25
) -> list[ScheduleRun]:
    gateway = request_tenant(request)
    async with gateway.engine.connect() as conn:
        rows = await store.runs(conn, schedule_id, offset, page_limit(gateway, limit))
    return [
        ScheduleRun(
            scheduled_fire_time=r.scheduled_fire_time,
            actual_fire_time=r.actual_fire_time,
            job_id=r.job_id,
            outcome=r.outcome,
            detail=r.detail,
        )
        for r in rows
    ]
