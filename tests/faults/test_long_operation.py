"""A step longer than the broker's consumer_timeout: the broker closes the consumer's channel and
redelivers, yet the job completes exactly once and the shard's consumer comes back.

The project raises consumer_timeout (infra/rabbitmq/rabbitmq.conf; `just services` on a native
broker) so this does not happen in normal operation; this test lowers it to show that even when
it does, the per-instance lock and idempotent steps keep the result right."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest

from services.runtime.topology import shard_queue
from tests.support import pg, rabbit
from tests.support.cluster import cluster
from tests.support.polling import wait_for_instance

pytestmark = pytest.mark.faults

PROJECT_TIMEOUT_MS = 14_400_000


def _set_consumer_timeout(ms: int) -> None:
    subprocess.run(
        ["rabbitmqctl", "-q", "eval", f"application:set_env(rabbit, consumer_timeout, {ms})."],
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_an_operation_outliving_the_consumer_timeout_still_completes_once(
    settings_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    _set_consumer_timeout(5_000)  # read by channels when they open: set before the services start
    try:
        with (
            cluster(settings_env, Path(tmp_path_factory.mktemp("slow")), shards=1) as stack,
            stack.client() as api,
        ):
            slots = pg.HeldCloneSlots(
                2, stack.env["EDFI_IM_RABBITMQ_URL"]
            )  # the clone waits: an artificially slow step
            try:
                r = api.post(
                    "/v2/dbInstances",
                    json={
                        "name": f"Slow {uuid.uuid4().hex[:6]}",
                        "databaseTemplate": "Minimal",
                    },
                )
                job_id = r.json()["jobId"]
                # The broker checks consumer timeouts about once a minute.
                deadline = time.monotonic() + 150
                while api.get(f"/v2/jobs/{job_id}").json()["attempts"] < 2:
                    assert time.monotonic() < deadline, "the broker never redelivered"
                    time.sleep(1)
            finally:
                slots.release()
            done, _ = wait_for_instance(api, r.json()["id"], timeout=60)
            assert done["status"] == "Completed", done
            assert pg.exists(done["databaseName"])
            assert len(pg.databases_like(done["databaseName"])) == 1
            # The shard's consumer is back and works.
            deadline = time.monotonic() + 30
            while rabbit.queue(stack.vhost, shard_queue(0)).get("consumers", 0) < 1:
                assert time.monotonic() < deadline, "no consumer came back on the shard"
                time.sleep(0.5)
            after = api.post(
                "/v2/dbInstances",
                json={"name": f"Next {uuid.uuid4().hex[:6]}", "databaseTemplate": "Minimal"},
            )
            assert wait_for_instance(api, after.json()["id"])[0]["status"] == "Completed"
    finally:
        _set_consumer_timeout(PROJECT_TIMEOUT_MS)
