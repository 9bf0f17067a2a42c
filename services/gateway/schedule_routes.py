"""`/v2/schedules`: Quartz-style schedules that fire jobs through the same outbox."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from services.admin_db import schedules as store
from services.gateway.routes import PROBLEM, Limit, Offset, page_limit
from services.gateway.state import gateway_state
from services.rules.triggers import ScheduleState
from services.runtime.logging import get_logger
from services.scheduler.firing import utcnow
from services.scheduler.schemas import CreateSchedule, Schedule, ScheduleRun

log = get_logger(__name__)
router = APIRouter(prefix="/v2/schedules", tags=["schedules"])


@router.post(
    "",
    status_code=201,
    response_model=Schedule,
    responses={409: PROBLEM, 422: PROBLEM},
    summary="Schedule a job: cron (Quartz or standard), fixed interval, or one time",
)
async def create_schedule(body: CreateSchedule, request: Request, response: Response) -> Schedule:
    state = gateway_state(request)
    async with state.engine.begin() as conn:
        row = await store.create_schedule(conn, state.settings, body, utcnow())
    log.info(
        "schedule created",
        schedule_id=str(row.id),
        schedule=row.name,
        job_type=row.job_type,
        next_fire_time=row.next_fire_time.isoformat() if row.next_fire_time else None,
    )
    response.headers["Location"] = f"/v2/schedules/{row.id}"
    return store.schedule_out(row)


@router.get("", response_model=list[Schedule], responses={422: PROBLEM})
async def list_schedules(
    request: Request,
    offset: Offset = 0,
    limit: Limit = 25,
    state: Annotated[ScheduleState | None, Query(description="Only this state")] = None,
) -> list[Schedule]:
    gateway = gateway_state(request)
    async with gateway.engine.connect() as conn:
        rows = await store.list_schedules(conn, offset, page_limit(gateway, limit), state)
    return [store.schedule_out(r) for r in rows]


@router.get("/{schedule_id}", response_model=Schedule, responses={404: PROBLEM})
async def get_schedule(schedule_id: uuid.UUID, request: Request) -> Schedule:
    async with gateway_state(request).engine.connect() as conn:
        return store.schedule_out(await store.get_schedule(conn, schedule_id))


@router.post(
    "/{schedule_id}/pause",
    response_model=Schedule,
    responses={404: PROBLEM, 409: PROBLEM},
    summary="Stop firing until resumed",
)
async def pause_schedule(schedule_id: uuid.UUID, request: Request) -> Schedule:
    async with gateway_state(request).engine.begin() as conn:
        row = await store.pause_schedule(conn, schedule_id)
    log.info("schedule paused", schedule_id=str(schedule_id))
    return store.schedule_out(row)


@router.post(
    "/{schedule_id}/resume",
    response_model=Schedule,
    responses={404: PROBLEM, 409: PROBLEM},
    summary="Fire again; occurrences missed meanwhile follow the misfire policy",
)
async def resume_schedule(schedule_id: uuid.UUID, request: Request) -> Schedule:
    async with gateway_state(request).engine.begin() as conn:
        row = await store.resume_schedule(conn, schedule_id)
    log.info("schedule resumed", schedule_id=str(schedule_id))
    return store.schedule_out(row)


@router.delete(
    "/{schedule_id}",
    status_code=204,
    responses={404: PROBLEM},
    summary="Unschedule: the schedule and its history go; its jobs stay",
)
async def delete_schedule(schedule_id: uuid.UUID, request: Request) -> Response:
    async with gateway_state(request).engine.begin() as conn:
        await store.delete_schedule(conn, schedule_id)
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
    gateway = gateway_state(request)
    async with gateway.engine.connect() as conn:
        return await store.list_runs(conn, schedule_id, offset, page_limit(gateway, limit))
