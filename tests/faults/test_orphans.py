"""Orphan recovery (seed 004): a job whose worker stopped sending heartbeats is re-driven through
the outbox and finishes correctly; after the configured number of recoveries it fails with a
clear reason instead of looping. Two executions of one job never run at once."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import pg
from tests.support.own import Own
from tests.support.polling import wait_for_instance
from tests.support.stack import Stack

pytestmark = pytest.mark.faults


@pytest.fixture
def system(
    own: Own, settings_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with own.cluster(
        settings_env,
        Path(tmp_path_factory.mktemp("orphans")),
        shards=1,
        EDFI_IM_HEARTBEAT_INTERVAL_SECONDS="1",
        EDFI_IM_ORPHAN_THRESHOLD_SECONDS="4",
        EDFI_IM_ORPHAN_CHECK_INTERVAL_SECONDS="0.5",
        EDFI_IM_MAX_RECOVERIES="2",
    ) as stack:
        yield stack


def _job(api: httpx.Client, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = api.get(f"/v2/jobs/{job_id}").json()
    return body


def _wait_job(api: httpx.Client, job_id: str, test: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not test(_job(api, job_id)):
        assert time.monotonic() < deadline, f"{what}: {_job(api, job_id)}"
        time.sleep(0.2)


def _stuck_create(api: httpx.Client, stack: Stack) -> tuple[dict[str, Any], pg.HeldCloneSlots]:
    slots = stack.pg_server.clone_slots(2, stack.env["EDFI_IM_RABBITMQ_URL"])
    r = api.post(
        "/v2/dbInstances",
        json={"name": f"Orphan {uuid.uuid4().hex[:6]}", "databaseTemplate": "Minimal"},
    )
    body: dict[str, Any] = r.json()
    _wait_job(api, body["jobId"], lambda j: j["status"] == "Running", "never started")
    stack.procs["provisioner-0"].send_signal(signal.SIGSTOP)  # alive, but silent
    return body, slots


def test_a_silent_worker_s_job_is_re_driven_and_completes_once(system: Stack) -> None:
    with system.client() as api:
        body, slots = _stuck_create(api, system)
        try:
            _wait_job(api, body["jobId"], lambda j: j["recoveries"] >= 1, "not re-driven")
            assert "Re-driven" in _job(api, body["jobId"])["progressMessage"]
        finally:
            system.procs["provisioner-0"].send_signal(signal.SIGCONT)
            slots.release()
        done, _ = wait_for_instance(api, body["id"], timeout=60)
        assert done["status"] == "Completed", done
        job = _job(api, body["jobId"])
        assert job["status"] == "Completed"
        assert 1 <= job["recoveries"] <= 2
        assert system.pg_server.databases_like(done["databaseName"]) == [done["databaseName"]]


def test_a_job_recovered_too_often_fails_with_a_clear_reason(system: Stack) -> None:
    with system.client() as api:
        body, slots = _stuck_create(api, system)
        try:
            _wait_job(api, body["jobId"], lambda j: j["status"] == "Failed", "never gave up")
        finally:
            system.procs["provisioner-0"].send_signal(signal.SIGCONT)
            slots.release()
        job = _job(api, body["jobId"])
        assert job["recoveries"] == 2
        assert "giving up" in job["error"] and "no heartbeat" in job["error"]
        failed = api.get(f"/v2/dbInstances/{body['id']}").json()
        assert failed["status"] == "Error" and failed["error"] == job["error"]
        # The give-up is a fence: the worker woke up, finished its clone, and found at the last
        # step that its job was given up; it dropped its clone and created nothing. Its queued
        # re-drives are skipped. The records (Error, no database) stay true.
        staging = f"edfi_im_staging_{uuid.UUID(body['jobId']).hex}"
        deadline = time.monotonic() + 30
        while not system.logged_since_start("provisioner-0", "job given up; last step not taken"):
            assert time.monotonic() < deadline, "the woken worker never reached its fence"
            time.sleep(0.2)
        time.sleep(2)  # the re-driven commands are skipped too
        assert not system.pg_server.exists(body["databaseName"])
        assert not system.pg_server.exists(staging)
        assert system.logged_since_start(
            "provisioner-0", "job has already ended (given up or finished); its command is skipped"
        )
        after = api.get(f"/v2/dbInstances/{body['id']}").json()
        assert (after["status"], after["error"]) == ("Error", job["error"])
        assert _job(api, body["jobId"])["status"] == "Failed"
        assert api.delete(f"/v2/dbInstances/{body['id']}").status_code == 202
        gone, _ = wait_for_instance(api, body["id"], timeout=60)
        assert gone["status"] == "Deleted"
        assert not system.pg_server.exists(body["databaseName"])
