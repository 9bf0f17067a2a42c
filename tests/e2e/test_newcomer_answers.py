"""Answers a newcomer reads literally: a resumed schedule's `nextFireTime` is never a time already
past; prune's `olderThanDays` comes back as it was given (90, not 90.0); every service's
`/metrics` speaks the same exposition format, negotiated the same way."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.runtime.settings import Settings
from tests.support.polling import until as _until
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


POLICIES = ("fireOnceNow", "fireAll", "doNothing")


@pytest.fixture(scope="module")
def paused(stack: Stack, settings: Settings) -> dict[str, tuple[str, datetime]]:
    """For each misfire policy, an interval schedule paused before its first occurrence and left
    paused until that is a misfire (more than EDFI_IM_MISFIRE_THRESHOLD_SECONDS late): its id and
    that occurrence. The three wait out the threshold together."""
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    made: dict[str, tuple[str, datetime]] = {}
    with stack.client() as api:
        for policy in POLICIES:
            r = api.post(
                "/v2/schedules",
                json={
                    "name": f"resume {uuid.uuid4().hex[:8]}",
                    "job": {"type": "prune", "parameters": {"olderThanDays": 3650}},
                    "trigger": {
                        "type": "interval",
                        "intervalSeconds": 3600,
                        "startAt": _iso(start),
                    },
                    "misfirePolicy": policy,
                },
            )
            assert r.status_code == 201, r.text
            sid = r.json()["id"]
            assert api.post(f"/v2/schedules/{sid}/pause").json()["state"] == "Paused"
            made[policy] = (sid, start)
        while datetime.now(UTC) < start + timedelta(seconds=settings.misfire_threshold_seconds + 1):
            time.sleep(0.2)
        for sid, _ in made.values():
            # paused: as it was
            assert api.get(f"/v2/schedules/{sid}").json()["nextFireTime"] == _iso(start)
    return made


@pytest.mark.parametrize("policy", ["fireOnceNow", "fireAll"])
def test_a_resumed_schedule_that_fires_what_it_missed_answers_now(
    api: httpx.Client, paused: dict[str, tuple[str, datetime]], policy: str
) -> None:
    sid, start = paused[policy]
    before = datetime.now(UTC)
    resumed = api.post(f"/v2/schedules/{sid}/resume").json()
    after = datetime.now(UTC)
    assert resumed["state"] == "Normal"
    assert before - timedelta(seconds=1) <= _at(resumed["nextFireTime"]) <= after
    # The policy still applies: the missed occurrence fires once the scheduler passes.
    runs = _until(lambda: api.get(f"/v2/schedules/{sid}/runs").json())
    assert runs[0]["scheduledFireTime"] == _iso(start) and runs[0]["outcome"] != "Missed"
    assert "misfire" in runs[0]["detail"]
    assert _at(api.get(f"/v2/schedules/{sid}").json()["nextFireTime"]) > datetime.now(UTC)
    assert api.delete(f"/v2/schedules/{sid}").status_code == 204


def test_a_resumed_do_nothing_schedule_answers_its_next_occurrence_after_now(
    api: httpx.Client, paused: dict[str, tuple[str, datetime]]
) -> None:
    sid, start = paused["doNothing"]
    resumed = api.post(f"/v2/schedules/{sid}/resume").json()
    assert _at(resumed["nextFireTime"]) == start + timedelta(seconds=3600)
    for listed in api.get("/v2/schedules", params={"limit": 500}).json():
        if listed["id"] == sid:
            assert listed["nextFireTime"] == resumed["nextFireTime"]
    runs = _until(lambda: api.get(f"/v2/schedules/{sid}/runs").json())
    assert [r["outcome"] for r in runs] == ["Missed"]
    assert api.delete(f"/v2/schedules/{sid}").status_code == 204


def test_older_than_days_comes_back_as_it_was_given(api: httpx.Client) -> None:
    run_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    r = api.post(
        "/v2/schedules",
        json={
            "name": f"prune {uuid.uuid4().hex[:8]}",
            "job": {"type": "prune", "parameters": {"olderThanDays": 90}},
            "trigger": {"type": "once", "runAt": _iso(run_at)},
        },
    )
    assert r.status_code == 201, r.text
    assert '"olderThanDays":90}' in r.text.replace(" ", "")
    sid = r.json()["id"]
    [job] = _until(lambda: api.get("/v2/jobs", params={"scheduleId": sid}).json())
    done = _until(
        lambda: (j := api.get(f"/v2/jobs/{job['id']}")).json()["status"] == "Completed" and j
    )
    assert "90.0" not in done.text
    # The job carries the parameter as the worker reads it, and prune used it (not the default).
    assert done.json()["parameters"] == {"olderThanDays": 90}
    result = done.json()["result"]
    assert result["olderThanDays"] == 90 and isinstance(result["olderThanDays"], int)
    fractional = api.post(
        "/v2/schedules",
        json={
            "name": f"prune {uuid.uuid4().hex[:8]}",
            "job": {"type": "prune", "parameters": {"olderThanDays": 1.5}},
            "trigger": {"type": "once", "runAt": _iso(run_at + timedelta(days=1))},
        },
    )
    assert fractional.json()["job"]["parameters"]["olderThanDays"] == 1.5


PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text"


def test_every_service_answers_metrics_in_the_same_format(stack: Stack) -> None:
    urls = [f"{stack.url}/metrics"] + [
        f"http://127.0.0.1:{port}/metrics" for port in stack.health_ports.values()
    ]
    assert len(urls) == 4
    for url in urls:
        plain = httpx.get(url, timeout=10)
        assert plain.status_code == 200, url
        assert plain.headers["content-type"] == PROMETHEUS_TEXT, url
        assert "# TYPE edfi_im_messages_consumed_total counter" in plain.text
        asked = httpx.get(url, headers={"Accept": f"{OPENMETRICS}; version=1.0.0"}, timeout=10)
        assert asked.headers["content-type"].startswith(f"{OPENMETRICS}; version=1.0.0"), url
        assert asked.text.rstrip().endswith("# EOF"), url


def test_schedule_names_are_unique_ignoring_case(api: httpx.Client) -> None:
    name = f"Nightly Prune {uuid.uuid4().hex[:6]}"
    body = {
        "job": {"type": "prune", "parameters": {}},
        "trigger": {"type": "cron", "cron": "15 3 * * *", "timeZone": "UTC"},
    }
    first = api.post("/v2/schedules", json={"name": name, **body})
    assert first.status_code == 201, first.text
    taken = api.post("/v2/schedules", json={"name": name.lower(), **body})
    assert taken.status_code == 409
    assert taken.json()["errors"] == {"name": ["is taken"]}
    assert api.delete(f"/v2/schedules/{first.json()['id']}").status_code == 204
