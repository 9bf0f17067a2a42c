"""The scheduler against the real admin database, with a controllable clock: a fire writes its
job, outbox message and run with the schedule's advance (invariant 1); concurrent passes never
fire an occurrence twice; misfire policies, allowConcurrent, pause/resume, refusals, Error."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.admin_db import schedules as store
from services.admin_db.accept import accept_create
from services.admin_db.engine import create_admin_engine
from services.admin_db.tables import db_instances, jobs, outbox, schedule_runs, schedules
from services.gateway.schedule_schemas import CreateSchedule
from services.rules.errors import RefusedError
from services.rules.states import Switch
from services.runtime.settings import Settings
from services.scheduler.firing import fire_due

pytestmark = pytest.mark.integration

T0 = datetime(2031, 1, 6, 12, 0, 0, tzinfo=UTC)  # a Monday, far from any real clock


@pytest.fixture
async def clean(engine: AsyncEngine) -> AsyncIterator[None]:
    """Each test sees only its own schedules; their unsent messages never reach a later relay."""

    async def wipe() -> None:
        async with engine.begin() as conn:
            await conn.execute(delete(schedules))
            await conn.execute(
                delete(outbox)
                .where(outbox.c.sent_at.is_(None))
                .where(outbox.c.message_type.like("%MaintenanceRequested%"))
            )

    await wipe()
    yield
    await wipe()


def _tuned(settings: Settings, **values: Any) -> Settings:
    return settings.model_copy(update=values)


async def _schedule(
    engine: AsyncEngine, settings: Settings, now: datetime = T0, **body: Any
) -> uuid.UUID:
    payload: dict[str, Any] = {
        "name": f"s {uuid.uuid4().hex[:8]}",
        "job": {"type": "prune", "parameters": {}},
        "trigger": {"type": "interval", "intervalSeconds": 60, "startAt": now.isoformat()},
    } | body
    body_ = CreateSchedule.model_validate(payload)
    async with engine.begin() as conn:
        row = await store.create(
            conn,
            settings,
            name=body_.name,
            job_type=body_.job.type,
            parameters=body_.job.parameters,
            trigger=body_.trigger,
            misfire_policy=body_.misfire_policy,
            allow_concurrent=body_.allow_concurrent,
            now=now,
        )
    schedule_id: uuid.UUID = row.id
    return schedule_id


async def _row(engine: AsyncEngine, schedule_id: uuid.UUID) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(schedules).where(schedules.c.id == schedule_id))).one()


async def _runs(engine: AsyncEngine, schedule_id: uuid.UUID) -> list[Any]:
    async with engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    select(schedule_runs)
                    .where(schedule_runs.c.schedule_id == schedule_id)
                    .order_by(schedule_runs.c.scheduled_fire_time)
                )
            ).all()
        )


async def _jobs_of(engine: AsyncEngine, schedule_id: uuid.UUID) -> list[Any]:
    async with engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    select(jobs)
                    .where(jobs.c.schedule_id == schedule_id)
                    .order_by(jobs.c.created_at)
                )
            ).all()
        )


async def test_a_fire_commits_job_message_run_and_the_advance_together(
    engine: AsyncEngine, settings: Settings, clean: None
) -> None:
    sid = await _schedule(engine, settings)
    before = await _row(engine, sid)
    assert (before.state, before.next_fire_time, before.previous_fire_time) == ("Normal", T0, None)

    result = await fire_due(engine, settings, T0 + timedelta(seconds=1))
    assert result.fired >= 1

    after = await _row(engine, sid)
    assert after.next_fire_time == T0 + timedelta(seconds=60)
    assert after.previous_fire_time == T0
    assert after.fire_count == 1
    [job] = await _jobs_of(engine, sid)
    assert (job.type, job.status, job.schedule_id, after.last_job_id) == (
        "prune",
        "Pending",
        sid,
        job.id,
    )
    [run] = await _runs(engine, sid)
    assert (run.scheduled_fire_time, run.job_id, run.outcome) == (T0, job.id, "Fired")
    async with engine.connect() as conn:
        message = (
            await conn.execute(
                select(outbox).where(outbox.c.body["job_id"].as_string() == str(job.id))
            )
        ).one()
    assert message.exchange == "maintenance.requests"
    assert message.body["task"] == "prune"

    # Not due again until the next minute.
    await fire_due(engine, settings, T0 + timedelta(seconds=59))
    assert len(await _runs(engine, sid)) == 1


async def test_concurrent_passes_fire_every_occurrence_exactly_once(
    engine: AsyncEngine, settings: Settings, clean: None
) -> None:
    """Two replicas (separate engines) and several passes each, racing over simulated seconds."""
    every_second = {"type": "cron", "cron": "* * * * * ?"}
    ids = [
        await _schedule(engine, settings, trigger=every_second, allowConcurrent=True)
        for _ in range(12)
    ]
    small = _tuned(settings, scheduler_batch_size=5)
    replicas = [create_admin_engine(settings.admin_database_url) for _ in range(2)]
    try:
        for step in range(1, 11):
            now = T0 + timedelta(seconds=step)
            passes = [fire_due(e, small, now) for e in replicas for _ in range(3)]
            await asyncio.gather(*passes)  # an IntegrityError here would be a double fire
    finally:
        for e in replicas:
            await e.dispose()
    for sid in ids:
        runs = await _runs(engine, sid)
        times = [r.scheduled_fire_time for r in runs]
        assert times == [T0 + timedelta(seconds=s) for s in range(1, 11)]
        assert len(await _jobs_of(engine, sid)) == 10
        assert len({r.job_id for r in runs}) == 10


@pytest.mark.parametrize(
    ("policy", "fired", "missed_outcome"),
    [("fireOnceNow", 1, None), ("doNothing", 0, "Missed"), ("fireAll", 30, None)],
)
async def test_misfire_policy_when_the_scheduler_was_down(
    engine: AsyncEngine,
    settings: Settings,
    clean: None,
    policy: str,
    fired: int,
    missed_outcome: str | None,
) -> None:
    sid = await _schedule(
        engine,
        settings,
        misfirePolicy=policy,
        allowConcurrent=True,
        trigger={"type": "interval", "intervalSeconds": 10, "startAt": T0.isoformat()},
    )
    down_until = T0 + timedelta(seconds=295)  # occurrences T0 .. T0+290 missed: 30
    tuned = _tuned(settings, misfire_threshold_seconds=60, scheduler_max_fires_per_pass=7)
    for _ in range(10):  # fireAll catches up over several passes
        await fire_due(engine, tuned, down_until)
    assert len(await _jobs_of(engine, sid)) == fired
    row = await _row(engine, sid)
    assert row.next_fire_time == T0 + timedelta(seconds=300)
    runs = await _runs(engine, sid)
    if missed_outcome:
        [run] = runs
        assert run.outcome == missed_outcome and run.job_id is None
        assert "30 occurrence(s)" in run.detail
    elif fired == 1:
        [run] = runs
        assert run.outcome == "Fired" and "29 further missed" in run.detail
    else:
        assert [r.scheduled_fire_time for r in runs] == [
            T0 + timedelta(seconds=10 * k) for k in range(30)
        ]


async def test_late_within_the_threshold_is_not_a_misfire(
    engine: AsyncEngine, settings: Settings, clean: None
) -> None:
    sid = await _schedule(engine, settings, misfirePolicy="doNothing")
    await fire_due(
        engine, _tuned(settings, misfire_threshold_seconds=60), T0 + timedelta(seconds=45)
    )
    [run] = await _runs(engine, sid)
    assert run.outcome == "Fired" and run.detail is None


async def test_disallowed_concurrency_skips_and_records_the_fire(
    engine: AsyncEngine, settings: Settings, clean: None
) -> None:
    sid = await _schedule(
        engine,
        settings,
        allowConcurrent=False,
        trigger={"type": "interval", "intervalSeconds": 10, "startAt": T0.isoformat()},
    )
    await fire_due(engine, settings, T0)
    [first] = await _jobs_of(engine, sid)
    await fire_due(engine, settings, T0 + timedelta(seconds=10))  # first job still Pending
    async with engine.begin() as conn:
        await conn.execute(update(jobs).where(jobs.c.id == first.id).values(status="Completed"))
    await fire_due(engine, settings, T0 + timedelta(seconds=20))
    runs = await _runs(engine, sid)
    assert [r.outcome for r in runs] == ["Fired", "Skipped", "Fired"]
    assert str(first.id) in runs[1].detail and "allowConcurrent" in runs[1].detail
    assert len(await _jobs_of(engine, sid)) == 2


async def test_paused_schedules_do_not_fire_and_resume_applies_the_misfire_policy(
    engine: AsyncEngine, settings: Settings, clean: None
) -> None:
    sid = await _schedule(
        engine,
        settings,
        misfirePolicy="fireOnceNow",
        allowConcurrent=True,
        trigger={"type": "interval", "intervalSeconds": 10, "startAt": T0.isoformat()},
    )
    await fire_due(engine, settings, T0)
    async with engine.begin() as conn:
        paused = await store.pause(conn, sid)
    assert paused.state == "Paused" and paused.paused_at is not None
    for s in range(10, 300, 10):
        await fire_due(engine, settings, T0 + timedelta(seconds=s))
    assert len(await _runs(engine, sid)) == 1

    async with engine.begin() as conn:
        resumed = await store.resume(conn, sid)
    assert resumed.state == "Normal"
    await fire_due(engine, settings, T0 + timedelta(seconds=305))
    runs = await _runs(engine, sid)
    assert [r.outcome for r in runs] == ["Fired", "Fired"]
    assert "misfire" in runs[1].detail
    assert (await _row(engine, sid)).next_fire_time == T0 + timedelta(seconds=310)


async def test_a_refused_job_is_a_failed_run_and_the_schedule_goes_on(
    engine: AsyncEngine, settings: Settings, clean: None
) -> None:
    """The instance exists when the schedule is made, but its create is still in flight when
    the schedule fires: the delete is refused (409), as over HTTP."""
    name = f"Busy {uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        busy = await accept_create(
            conn,
            name=name,
            template_key="Minimal",
            template_database=settings.templates["Minimal"],
            database_name=settings.database_name_pattern.format(name=name.replace(" ", "_")),
            correlation_id="test",
            tenant=None,
            switch=Switch(),
        )
    sid = await _schedule(
        engine, settings, job={"type": "deleteInstance", "parameters": {"id": busy.id}}
    )
    await fire_due(engine, settings, T0)
    async with engine.connect() as conn:
        [run] = await store.runs(conn, sid, 0, 10)
    assert run.outcome == "Failed" and run.job_id is None
    assert "refused (conflict)" in (run.detail or "") and "in flight" in (run.detail or "")
    row = await _row(engine, sid)
    assert row.state == "Normal" and row.next_fire_time == T0 + timedelta(seconds=60)
    async with engine.begin() as conn:
        await conn.execute(delete(outbox).where(outbox.c.sent_at.is_(None)))
        await conn.execute(
            update(db_instances).where(db_instances.c.id == busy.id).values(status="Deleted")
        )


@pytest.mark.parametrize("job_type", ["deleteInstance", "renameInstance"])
async def test_a_schedule_for_an_instance_that_does_not_exist_is_refused_at_creation(
    engine: AsyncEngine, settings: Settings, clean: None, job_type: str
) -> None:
    parameters: dict[str, Any] = {"id": 987654}
    if job_type == "renameInstance":
        parameters["name"] = "Nobody Renamed"
    with pytest.raises(RefusedError) as refused:
        await _schedule(engine, settings, job={"type": job_type, "parameters": parameters})
    assert type(refused.value).__name__ == "InvalidError"
    assert refused.value.errors == {"job.parameters.id": ["no instance with id 987654"]}


async def test_a_one_time_schedule_completes(
    engine: AsyncEngine, settings: Settings, clean: None
) -> None:
    run_at = T0 + timedelta(seconds=2)
    sid = await _schedule(engine, settings, trigger={"type": "once", "runAt": run_at.isoformat()})
    await fire_due(engine, settings, T0 + timedelta(seconds=1))
    assert await _runs(engine, sid) == []
    await fire_due(engine, settings, T0 + timedelta(seconds=2))
    row = await _row(engine, sid)
    assert (row.state, row.next_fire_time, row.previous_fire_time) == ("Complete", None, run_at)
    async with engine.begin() as conn:
        with pytest.raises(RefusedError) as refused:
            await store.resume(conn, sid)
    assert type(refused.value).__name__ == "ConflictError"


async def test_a_schedule_that_cannot_fire_goes_to_error_without_blocking_others(
    engine: AsyncEngine, settings: Settings, clean: None
) -> None:
    broken = await _schedule(engine, settings)
    healthy = await _schedule(engine, settings)
    async with engine.begin() as conn:
        await conn.execute(
            update(schedules)
            .where(schedules.c.id == broken)
            .values(trigger={"type": "cron", "cron": "not a cron"})
        )
    await fire_due(engine, settings, T0)
    bad = await _row(engine, broken)
    assert bad.state == "Error" and "cron" in bad.error
    assert len(await _runs(engine, healthy)) == 1
    async with engine.begin() as conn:
        await conn.execute(
            update(schedules)
            .where(schedules.c.id == broken)
            .values(trigger={"type": "interval", "intervalSeconds": 60, "startAt": T0.isoformat()})
        )
        resumed = await store.resume(conn, broken)
    assert resumed.state == "Normal" and resumed.error is None


async def test_unschedule_removes_the_schedule_and_its_runs_but_not_its_jobs(
    engine: AsyncEngine, settings: Settings, clean: None
) -> None:
    sid = await _schedule(engine, settings)
    await fire_due(engine, settings, T0)
    [job] = await _jobs_of(engine, sid)
    async with engine.begin() as conn:
        await store.unschedule(conn, sid)
    async with engine.connect() as conn:
        with pytest.raises(RefusedError):
            await store.get(conn, sid)
        left = await conn.scalar(
            text("SELECT count(*) FROM edfi_im.schedule_runs WHERE schedule_id = :s"), {"s": sid}
        )
    assert left == 0
    assert [j.id for j in await _jobs_of(engine, sid)] == [job.id]


@pytest.mark.parametrize(
    ("switched", "job", "setting"),
    [
        (
            {"destructive_operations_enabled": False},
            "deleteInstance",
            "EDFI_IM_DESTRUCTIVE_OPERATIONS_ENABLED",
        ),
        (
            {"instance_management_enabled": False},
            "createInstance",
            "EDFI_IM_INSTANCE_MANAGEMENT_ENABLED",
        ),
    ],
)
async def test_a_fire_the_kill_switch_refuses_is_a_failed_run_naming_the_setting(
    engine: AsyncEngine,
    settings: Settings,
    clean: None,
    switched: dict[str, bool],
    job: str,
    setting: str,
) -> None:
    """The schedule was made while instance management was on; when it fires, it is off."""
    name = f"Switch {uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        target = await accept_create(
            conn,
            name=name,
            template_key="Minimal",
            template_database=settings.templates["Minimal"],
            database_name=settings.database_name_pattern.format(name=name.replace(" ", "_")),
            correlation_id="test",
            tenant=None,
            switch=Switch(),
        )
        await conn.execute(
            update(db_instances).where(db_instances.c.id == target.id).values(status="Completed")
        )
        await conn.execute(delete(outbox).where(outbox.c.sent_at.is_(None)))
    parameters: dict[str, Any] = (
        {"id": target.id}
        if job == "deleteInstance"
        else {"name": f"New {uuid.uuid4().hex[:8]}", "databaseTemplate": "Minimal"}
    )
    sid = await _schedule(engine, settings, job={"type": job, "parameters": parameters})
    await fire_due(engine, _tuned(settings, **switched), T0)
    async with engine.connect() as conn:
        [run] = await store.runs(conn, sid, 0, 10)
        status = await conn.scalar(
            select(db_instances.c.status).where(db_instances.c.id == target.id)
        )
    assert run.outcome == "Failed" and run.job_id is None
    assert "refused (turned off)" in (run.detail or "") and setting in (run.detail or "")
    assert status == "Completed"  # nothing was started
    assert await _jobs_of(engine, sid) == []
    async with engine.begin() as conn:
        await conn.execute(
            update(db_instances).where(db_instances.c.id == target.id).values(status="Deleted")
        )
