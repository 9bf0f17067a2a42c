"""Graceful shutdown: on SIGTERM a service stops taking work, finishes what it holds within the
grace period and exits 0."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.support.own import Own
from tests.support.polling import until, wait_for_instance

pytestmark = pytest.mark.faults


def test_sigterm_finishes_the_operation_in_hand_and_exits_0(
    own: Own, settings_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    with own.cluster(settings_env, Path(tmp_path_factory.mktemp("stop")), shards=1) as stack:
        with stack.client() as api:
            slots = stack.pg_server.clone_slots(2, stack.env["EDFI_IM_RABBITMQ_URL"])
            r = api.post(
                "/v2/dbInstances",
                json={"name": f"Stopping {uuid.uuid4().hex[:6]}", "databaseTemplate": "Minimal"},
            )
            job_id = r.json()["jobId"]
            deadline = time.monotonic() + 30
            while api.get(f"/v2/jobs/{job_id}").json()["status"] != "Running":
                assert time.monotonic() < deadline
                time.sleep(0.2)
            # The provisioner is mid-operation (waiting for a clone slot) when asked to stop.
            threading.Timer(2.0, slots.release).start()
            code = stack.stop("provisioner-0", sig=signal.SIGTERM, timeout=60)
            assert code == 0
            # Its outcome went out (confirmed) before it exited; the status service applies it
            # a moment later: the job leaves Running without any provisioner running.
            job = until(
                lambda: (j := api.get(f"/v2/jobs/{job_id}").json())["status"] != "Running" and j,
                timeout=10,
            )
            assert job["status"] == "Completed", job
            assert job["attempts"] == 1  # finished by the same worker, not redelivered
            assert wait_for_instance(api, r.json()["id"])[0]["status"] == "Completed"
        for name in ("gateway", "status"):
            assert stack.stop(name, sig=signal.SIGTERM) == 0, name
