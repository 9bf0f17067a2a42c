"""Firing due schedules. One pass is one transaction: it locks the due schedule rows (other
replicas skip them), writes each fire's job and outbox message, records the run and advances the
schedule, all committed together - so a fire is never lost and never doubled. The unique
(schedule, occurrence) key on the runs is the database's own proof of the second half."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic import TypeAdapter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.admin_db import schedules as schedule_rows
from services.admin_db.accept import accept_job
from services.admin_db.tables import jobs, schedules
from services.rules.errors import (
    ConflictError,
    DisabledError,
    InvalidError,
    NotFoundError,
    RefusedError,
)
from services.rules.states import JobType, is_terminal
from services.rules.triggers import (
    FirePlan,
    MisfirePolicy,
    RunOutcome,
    ScheduleState,
    Trigger,
    plan,
)
from services.runtime import dberrors
from services.runtime.logging import get_logger
from services.runtime.metrics import JOBS_ACCEPTED, SCHEDULE_FIRES, WRITES_REFUSED
from services.runtime.settings import Settings

log = get_logger(__name__)

TRIGGER: TypeAdapter[Trigger] = TypeAdapter(Trigger)
# What a run's history says of a refused fire (in words, not HTTP status codes).
REFUSAL_KINDS: dict[type[RefusedError], str] = {
    NotFoundError: "not found",
    ConflictError: "conflict",
    InvalidError: "invalid",
    DisabledError: "turned off",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class PassResult:
    schedules: int = 0  # due schedules handled
    fired: int = 0  # jobs written


def _when(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _misfire_note(p: FirePlan, policy: MisfirePolicy) -> str | None:
    if not p.misfired:
        return None
    if policy is MisfirePolicy.FIRE_ALL:
        return "misfire: fired late with every missed occurrence (fireAll)"
    count = f"{len(p.missed)}{' or more' if p.missed_more else ''}"
    if policy is MisfirePolicy.FIRE_ONCE_NOW:
        return f"misfire: fired once now; {count} further missed occurrence(s) not fired"
    first = _when(p.missed[0])
    return f"misfire: {count} occurrence(s) from {first} missed and not fired (doNothing)"


async def _unfinished(conn: AsyncConnection, job_id: uuid.UUID | None) -> bool:
    if job_id is None:
        return False
    status = await conn.scalar(select(jobs.c.status).where(jobs.c.id == job_id))
    return status is not None and not is_terminal(status)


@dataclass
class Fired:
    """What firing one schedule wrote (jobs) and what is left to write (runs, the advance)."""

    jobs: int
    runs: list[dict[str, Any]]
    advance: dict[str, Any]
    job_type: str = ""

    def count(self) -> None:
        """The metrics of what was written, once it is committed."""
        for r in self.runs:
            SCHEDULE_FIRES.labels(str(r["outcome"]).lower()).inc()
        if self.jobs:
            JOBS_ACCEPTED.labels(self.job_type, "schedule").inc(self.jobs)


async def fire_schedule(
    conn: AsyncConnection, settings: Settings, row: Any, now: datetime
) -> Fired:
    """Fire one locked, due schedule at `now`: its jobs are written; its runs and its advance
    are returned, for the pass to write with those of the other schedules."""
    policy = MisfirePolicy(row.misfire_policy)
    trigger = TRIGGER.validate_python(row.trigger)
    p = plan(
        trigger,
        row.next_fire_time,
        now,
        policy,
        timedelta(seconds=settings.misfire_threshold_seconds),
        settings.scheduler_max_fires_per_pass,
    )
    note = _misfire_note(p, policy)
    runs: list[dict[str, Any]] = []
    last_job = row.last_job_id
    fired = 0

    def run(at: datetime, outcome: str, job_id: uuid.UUID | None, detail: str | None) -> None:
        runs.append(
            {
                "schedule_id": row.id,
                "scheduled_fire_time": at,
                "actual_fire_time": now,
                "job_id": job_id,
                "outcome": outcome,
                "detail": detail,
            }
        )

    for at in p.fires:
        if not row.allow_concurrent and await _unfinished(conn, last_job):
            run(
                at,
                RunOutcome.SKIPPED,
                None,
                f"skipped: the previous run (job {last_job}) is still unfinished and "
                "allowConcurrent is false",
            )
            log.info("fire skipped: previous run unfinished", schedule_id=str(row.id))
            continue
        try:
            # No savepoint needed: every refusal is raised before the job writes anything.
            job_id = await accept_job(
                conn,
                settings,
                settings.tenant,
                JobType(row.job_type),
                row.parameters,
                correlation_id=f"schedule:{row.id}:{at:%Y%m%dT%H%M%S}",
                schedule_id=row.id,
                switch=settings.switch,
            )
        except RefusedError as refused:
            why = REFUSAL_KINDS.get(type(refused), "refused")
            run(at, RunOutcome.REFUSED, None, f"refused ({why}): {refused.detail}")
            log.warning(
                "scheduled job refused",
                schedule_id=str(row.id),
                schedule=row.name,
                refusal=why,
                reason=refused.detail,
            )
            continue
        run(at, RunOutcome.FIRED, job_id, note)
        last_job = job_id
        fired += 1
        log.info(
            "schedule fired",
            schedule_id=str(row.id),
            schedule=row.name,
            job_id=str(job_id),
            job_type=row.job_type,
            occurrence=_when(at),
            lateness_seconds=round((now - at).total_seconds(), 3),
        )
    if p.missed and not p.fires:
        run(p.missed[0], RunOutcome.MISSED, None, note)
        log.warning("misfire: occurrences not fired", schedule_id=str(row.id), detail=note)
    if p.next_fire is None:
        log.info("schedule complete: no further occurrences", schedule_id=str(row.id))
    handled = p.fires or p.missed
    return Fired(
        jobs=fired,
        job_type=row.job_type,
        runs=runs,
        advance={
            "b_id": row.id,
            "b_next": p.next_fire,
            "b_previous": max(handled) if handled else row.previous_fire_time,
            "b_fired": fired,
            "b_last_job": last_job,
            "b_state": (ScheduleState.NORMAL if p.next_fire else ScheduleState.COMPLETE).value,
        },
    )


def _due(settings: Settings, now: datetime) -> Any:
    return schedule_rows.due(settings.scheduler_batch_size, now)


async def _write(conn: AsyncConnection, fired: list[Fired]) -> None:
    await schedule_rows.record_fires(
        conn, [r for f in fired for r in f.runs], [f.advance for f in fired]
    )


def _connection_lost(exc: Exception) -> bool:
    """The admin database went away (or is busy): the next pass retries; no schedule is to
    blame."""
    return dberrors.is_transient(exc)


async def _fail_schedule(conn: AsyncConnection, schedule_id: uuid.UUID, exc: Exception) -> None:
    reason = f"the scheduler could not fire it: {dberrors.describe(exc)}"[:2000]
    WRITES_REFUSED.labels("scheduler", dberrors.sqlstate(exc) or type(exc).__name__).inc()
    await schedule_rows.put_in_error(conn, schedule_id, reason)
    log.error("schedule put in Error", schedule_id=str(schedule_id), reason=reason)


async def fire_due(engine: AsyncEngine, settings: Settings, now: datetime) -> PassResult:
    """One pass over the schedules due at `now` (at most a batch; other replicas' rows skipped),
    in one transaction. If firing one of them fails unexpectedly, the pass is rolled back and
    its schedules are fired again one per transaction, the failing one put in Error."""
    try:
        async with engine.begin() as conn:
            rows = (await conn.execute(_due(settings, now))).all()
            fired = [await fire_schedule(conn, settings, row, now) for row in rows]
            await _write(conn, fired)
        for f in fired:  # committed
            f.count()
        return PassResult(schedules=len(rows), fired=sum(f.jobs for f in fired))
    except Exception as exc:
        if _connection_lost(exc):
            raise
        log.warning("a scheduler pass failed; firing one schedule at a time", error=repr(exc))
    return await _fire_one_by_one(engine, settings, now)


async def _fire_one_by_one(engine: AsyncEngine, settings: Settings, now: datetime) -> PassResult:
    result = PassResult()
    one = settings.model_copy(update={"scheduler_batch_size": 1})
    for _ in range(settings.scheduler_batch_size):
        async with engine.begin() as conn:
            row = (await conn.execute(_due(one, now))).first()
            if row is None:
                break
            result.schedules += 1
            try:
                async with conn.begin_nested():
                    fired = await fire_schedule(conn, settings, row, now)
                    await _write(conn, [fired])
                fired.count()
                result.fired += fired.jobs
            except Exception as exc:  # a schedule that cannot fire must not block the others
                if _connection_lost(exc):
                    raise
                await _fail_schedule(conn, row.id, exc)
    return result


async def seconds_until_next(engine: AsyncEngine, now: datetime) -> float | None:
    async with engine.connect() as conn:
        nxt = await conn.scalar(
            select(func.min(schedules.c.next_fire_time)).where(
                schedules.c.state == ScheduleState.NORMAL.value
            )
        )
    return None if nxt is None else max(0.0, (nxt - now).total_seconds())


class Scheduler:
    """The firing loop: sleeps until the earliest next fire (at most the poll interval, so new
    and resumed schedules are seen), fires, wakes the outbox relay."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        on_fired: Callable[[], None],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._on_fired = on_fired
        self._clock = clock
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        if self._settings.tenant is not None:  # this task's own context: its log lines
            structlog.contextvars.bind_contextvars(tenant=self._settings.tenant)
        poll = self._settings.scheduler_poll_interval_seconds
        while True:
            delay = poll
            try:
                result = await fire_due(self._engine, self._settings, self._clock())
                if result.fired:
                    self._on_fired()
                if result.schedules >= self._settings.scheduler_batch_size:
                    continue  # more are due: no sleep
                until = await seconds_until_next(self._engine, self._clock())
                if until is not None:
                    delay = min(poll, until)
            except Exception as exc:
                log.warning("scheduler pass failed; will try again", error=repr(exc)[:500])
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
