"""The scheduler killed with -9 while it fires: a pass is one transaction, so an occurrence is
either fired (job, message and run committed together) or still due; after a restart, `fireAll`
schedules fire every occurrence they missed - none lost, none twice - and every fired job runs."""

from __future__ import annotations

import itertools
import signal
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.own import Own

pytestmark = pytest.mark.faults


def test_kill_9_of_the_scheduler_loses_and_doubles_no_occurrence(
    own: Own, settings_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    with own.cluster(settings_env, Path(tmp_path_factory.mktemp("scheduler-kill"))) as stack:
        stack.start("scheduler")
        stack.wait_ready()
        with stack.client() as api:
            ids = []
            for _ in range(10):
                r = api.post(
                    "/v2/schedules",
                    json={
                        "name": f"crash {uuid.uuid4().hex[:8]}",
                        "job": {"type": "prune", "parameters": {"olderThanDays": 3650}},
                        "trigger": {"type": "cron", "cron": "* * * * * ?"},
                        "misfirePolicy": "fireAll",
                        "allowConcurrent": True,
                    },
                )
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
            for kill in range(3):
                time.sleep(2.5)
                assert stack.stop("scheduler", sig=signal.SIGKILL) == -signal.SIGKILL
                time.sleep(2 + kill)  # down for a while: occurrences pile up
                stack.start("scheduler")
                stack.wait_ready()
            time.sleep(3)  # catch up
            for sid in ids:
                assert api.post(f"/v2/schedules/{sid}/pause").status_code == 200
            time.sleep(0.5)

            def runs(sid: str) -> list[dict[str, Any]]:
                listed: list[dict[str, Any]] = api.get(
                    f"/v2/schedules/{sid}/runs", params={"limit": 500}
                ).json()
                return sorted(listed, key=lambda run: run["scheduledFireTime"])

            for sid in ids:
                fired = runs(sid)
                times = [datetime.fromisoformat(r["scheduledFireTime"]) for r in fired]
                assert len(times) >= 10
                # Every second from the first fire to the last, exactly once.
                gaps = [b - a for a, b in itertools.pairwise(times)]
                assert gaps == [timedelta(seconds=1)] * len(gaps), sid
                assert all(r["jobId"] for r in fired)
                jobs = api.get("/v2/jobs", params={"scheduleId": sid, "limit": 500}).json()
                assert sorted(j["id"] for j in jobs) == sorted(r["jobId"] for r in fired)
                schedule = api.get(f"/v2/schedules/{sid}").json()
                assert schedule["fireCount"] == len(fired) and schedule["error"] is None

            # Every fired job was run by a maintenance worker (no message lost on the way).
            deadline = time.monotonic() + 60
            while True:
                pending = [
                    j
                    for sid in ids
                    for j in api.get("/v2/jobs", params={"scheduleId": sid, "limit": 500}).json()
                    if j["status"] != "Completed"
                ]
                if not pending or time.monotonic() > deadline:
                    break
                time.sleep(1)
            assert pending == []
