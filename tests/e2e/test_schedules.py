"""End to end, with the scheduler as a real process: a one-time schedule creates an instance; an
every-second cron fires, stops when paused and resumes with its misfire policy; two scheduler
replicas never fire an occurrence twice; jobs can be cancelled until a worker claims them and
show their progress while they run. The schedules the gateway refuses at its door are
tests/contract/test_schedules.py."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.runtime.settings import Settings
from tests.conftest import unique_name
from tests.support import pg
from tests.support.polling import until as _until
from tests.support.polling import wait_for_instance
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _schedule(api: httpx.Client, **body: Any) -> dict[str, Any]:
    r = api.post("/v2/schedules", json={"name": f"e2e {uuid.uuid4().hex[:8]}"} | body)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    assert r.headers["location"] == f"/v2/schedules/{created['id']}"
    return created


def _runs(api: httpx.Client, schedule_id: str) -> list[dict[str, Any]]:
    r = api.get(f"/v2/schedules/{schedule_id}/runs", params={"limit": 500})
    assert r.status_code == 200
    runs: list[dict[str, Any]] = r.json()
    return sorted(runs, key=lambda run: run["scheduledFireTime"])


def test_a_one_time_schedule_two_seconds_ahead_creates_an_instance(api: httpx.Client) -> None:
    name = unique_name("Scheduled")
    run_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    created = _schedule(
        api,
        job={"type": "createInstance", "parameters": {"name": name, "databaseTemplate": "Minimal"}},
        trigger={"type": "once", "runAt": _iso(run_at)},
    )
    assert created["state"] == "Normal"
    assert created["nextFireTime"] == _iso(run_at)
    assert created["previousFireTime"] is None

    def instance() -> dict[str, Any] | None:
        found = [i for i in api.get("/v2/dbInstances", params={"limit": 500}).json()]
        return next((i for i in found if i["name"] == name), None)

    made = _until(instance, timeout=30)
    done, _ = wait_for_instance(api, made["id"])
    assert done["status"] == "Completed"

    schedule = api.get(f"/v2/schedules/{created['id']}").json()
    assert schedule["state"] == "Complete"
    assert schedule["nextFireTime"] is None
    assert schedule["previousFireTime"] == _iso(run_at)
    assert schedule["lastJobId"] == done["jobId"]
    [run] = _runs(api, created["id"])
    assert run["jobId"] == done["jobId"] and run["outcome"] == "Completed"
    assert datetime.fromisoformat(run["actualFireTime"]) >= run_at
    [job] = api.get("/v2/jobs", params={"scheduleId": created["id"]}).json()
    assert (job["id"], job["type"], job["scheduleId"]) == (
        done["jobId"],
        "createInstance",
        created["id"],
    )


def test_every_second_cron_fires_pause_stops_it_resume_applies_the_misfire_policy(
    api: httpx.Client, settings: Settings
) -> None:
    created = _schedule(
        api,
        job={"type": "prune", "parameters": {"olderThanDays": 3650}},
        trigger={"type": "cron", "cron": "* * * * * ?", "timeZone": "America/Chicago"},
        misfirePolicy="fireOnceNow",
        allowConcurrent=True,
    )
    sid = created["id"]
    _until(lambda: len(_runs(api, sid)) >= 3)

    paused = api.post(f"/v2/schedules/{sid}/pause")
    assert paused.status_code == 200 and paused.json()["state"] == "Paused"
    assert api.post(f"/v2/schedules/{sid}/pause").json()["state"] == "Paused"  # idempotent
    time.sleep(0.5)  # a pass that was already under way has committed
    during = len(_runs(api, sid))
    time.sleep(settings.misfire_threshold_seconds + 2)
    assert len(_runs(api, sid)) == during, "a paused schedule fired"

    resumed = api.post(f"/v2/schedules/{sid}/resume")
    assert resumed.status_code == 200 and resumed.json()["state"] == "Normal"
    after = _until(lambda: (runs := _runs(api, sid))[during + 2 :] and runs, timeout=20)
    first_after = after[during]
    assert "misfire: fired once now" in (first_after["detail"] or "")
    assert first_after["outcome"] != "Missed" and first_after["jobId"]
    jobs = api.get("/v2/jobs", params={"scheduleId": sid, "limit": 500}).json()
    assert {j["type"] for j in jobs} == {"prune"}
    assert _until(
        lambda: (
            all(
                j["status"] == "Completed"
                for j in api.get("/v2/jobs", params={"scheduleId": sid, "limit": 500}).json()
            )
            or None
        ),
        timeout=30,
    )

    assert api.delete(f"/v2/schedules/{sid}").status_code == 204
    assert api.get(f"/v2/schedules/{sid}").status_code == 404
    assert api.get(f"/v2/schedules/{sid}/runs").status_code == 404


def test_two_scheduler_replicas_never_fire_the_same_occurrence_twice(
    api: httpx.Client, stack: Stack, admin_database: str
) -> None:
    # Two replicas in place of the stack's one, each taking a few due schedules per pass, so
    # they compete for the same rows every second.
    replicas = ("scheduler-a", "scheduler-b")
    stack.stop("scheduler")
    for name in replicas:
        stack.start(name, "scheduler", EDFI_IM_SCHEDULER_BATCH_SIZE="3")
    try:
        stack.wait_ready()
        ids = [
            _schedule(
                api,
                job={"type": "prune", "parameters": {"olderThanDays": 3650}},
                trigger={"type": "cron", "cron": "* * * * * ?"},
                # Every occurrence fires even if a pass runs late on a busy machine.
                misfirePolicy="fireAll",
                allowConcurrent=True,
            )["id"]
            for _ in range(20)
        ]
        time.sleep(6)
        for sid in ids:
            assert api.post(f"/v2/schedules/{sid}/pause").status_code == 200
        time.sleep(0.5)
    finally:
        for name in replicas:
            stack.stop(name)
        stack.restart("scheduler")
        stack.wait_ready()
    for sid in ids:
        schedule = api.get(f"/v2/schedules/{sid}").json()
        assert schedule["state"] == "Paused" and schedule["error"] is None
        runs = _runs(api, sid)
        fired = [r for r in runs if r["jobId"]]
        assert len(runs) >= 4 and len(fired) == len(runs)
        times = [datetime.fromisoformat(r["scheduledFireTime"]) for r in runs]
        # Every second exactly once: no repeats, no gaps.
        assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(seconds=1)] * (
            len(times) - 1
        )
        jobs = api.get("/v2/jobs", params={"scheduleId": sid, "limit": 500}).json()
        assert sorted(j["id"] for j in jobs) == sorted(r["jobId"] for r in fired)
        assert schedule["fireCount"] == len(fired)
    # Both replicas fired some of them, and together exactly the runs recorded.
    per_replica = {}
    for name in replicas:
        lines = [json.loads(line) for line in stack.log(name).read_text().splitlines() if line]
        fires = [entry for entry in lines if entry.get("event") == "schedule fired"]
        per_replica[name] = sum(1 for entry in fires if entry.get("schedule_id") in ids)
        assert not [entry for entry in lines if entry.get("event") == "schedule put in Error"]
    assert all(count > 0 for count in per_replica.values()), per_replica
    count = pg.query(
        admin_database,
        "SELECT count(*) FROM edfi_im.schedule_runs WHERE schedule_id = ANY(%s::uuid[])",
        (ids,),
    )[0][0]
    assert count == sum(per_replica.values())


def test_pending_jobs_can_be_cancelled_and_running_ones_show_progress(
    api: httpx.Client, settings: Settings, db_prefix: str
) -> None:
    with pg.HeldCloneSlots(
        settings.clone_concurrency, settings.rabbitmq_url
    ):  # every create waits for a clone slot
        made = []
        for _ in range(2 * settings.shard_count):
            r = api.post(
                "/v2/dbInstances",
                json={"name": unique_name("Cancel"), "databaseTemplate": "Minimal"},
            )
            assert r.status_code == 202
            made.append(r.json())

        def running() -> list[dict[str, Any]]:
            jobs = [api.get(f"/v2/jobs/{m['jobId']}").json() for m in made]
            return [j for j in jobs if j["status"] == "Running"]

        def waiting_for_a_slot() -> list[dict[str, Any]]:
            return [j for j in running() if "clone slot" in (j["progressMessage"] or "")]

        # Progress is visible while the job runs: it is waiting for a clone slot (a step is
        # reported once it has lasted EDFI_IM_PROGRESS_DELAY_SECONDS).
        [busy, *_] = _until(waiting_for_a_slot)
        assert busy["progressPercent"] == 20
        assert busy["startedAt"] is not None and busy["attempts"] == 1
        refused = api.delete(f"/v2/jobs/{busy['id']}")
        assert refused.status_code == 409
        assert refused.headers["content-type"].startswith("application/problem+json")

        answers = {m["jobId"]: api.delete(f"/v2/jobs/{m['jobId']}") for m in made}
        assert {r.status_code for r in answers.values()} <= {200, 409}
        cancelled = [job for job, r in answers.items() if r.status_code == 200]
        # Each shard works on one create at a time: at least the others were still queued.
        assert len(cancelled) >= len(made) - settings.shard_count
        for job in cancelled:
            assert answers[job].json()["status"] == "Cancelled"
    for m in made:
        done, _ = wait_for_instance(api, m["id"])
        job = api.get(f"/v2/jobs/{m['jobId']}").json()
        if m["jobId"] in cancelled:
            assert (done["status"], job["status"]) == ("Deleted", "Cancelled")
        else:
            assert (done["status"], job["status"]) == ("Completed", "Completed")
    # The queued commands of the cancelled jobs were consumed and skipped: no database.
    time.sleep(1)
    for m in made:
        if m["jobId"] in cancelled:
            assert not pg.exists(f"{db_prefix}{m['name'].replace(' ', '_')}")
            assert api.get(f"/v2/jobs/{m['jobId']}").json()["startedAt"] is None
    listed = api.get("/v2/jobs", params={"status": "Cancelled", "type": "createInstance"})
    assert {j["id"] for j in listed.json()} >= set(cancelled)


def test_schedule_conflicts_and_unknown_ids_are_problems(api: httpx.Client) -> None:
    once = _schedule(
        api,
        job={"type": "prune", "parameters": {}},
        trigger={"type": "once", "runAt": _iso(datetime.now(UTC) - timedelta(days=1))},
        misfirePolicy="doNothing",
    )
    again = api.post(
        "/v2/schedules",
        json={
            "name": once["name"].upper(),
            "job": {"type": "prune"},
            "trigger": {"type": "cron", "cron": "0 0 9 * * ?"},
        },
    )
    assert again.status_code == 409 and "name" in again.json()["errors"]
    # A one-time trigger in the past misfires at once: doNothing completes it without a job.
    done = _until(
        lambda: (s := api.get(f"/v2/schedules/{once['id']}").json())["state"] == "Complete" and s
    )
    assert done["fireCount"] == 0 and done["lastJobId"] is None
    [run] = _runs(api, once["id"])
    assert run["outcome"] == "Missed" and run["jobId"] is None
    assert api.post(f"/v2/schedules/{once['id']}/resume").status_code == 409
    assert api.post(f"/v2/schedules/{once['id']}/pause").status_code == 409
    unknown = uuid.uuid4()
    for response in (
        api.get(f"/v2/schedules/{unknown}"),
        api.post(f"/v2/schedules/{unknown}/pause"),
        api.post(f"/v2/schedules/{unknown}/resume"),
        api.delete(f"/v2/schedules/{unknown}"),
        api.get(f"/v2/schedules/{unknown}/runs"),
        api.delete(f"/v2/jobs/{unknown}"),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")
    assert api.get("/v2/schedules/not-a-uuid").status_code == 422
