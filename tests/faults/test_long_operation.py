"""A step longer than the broker's consumer_timeout: the broker closes the consumer's channel and
redelivers, yet the job completes exactly once and the shard's consumer comes back.

The project raises consumer_timeout (infra/rabbitmq/rabbitmq.conf; `just services` on a native
broker) so this does not happen in normal operation; this test lowers it, on the suite's own
RabbitMQ nodes only, to show that even when it does, the per-instance lock and idempotent steps
keep the result right. (Those nodes check consumer timeouts every 2 s, RabbitMQ's default is once
a minute: tests/support/own_rabbit.py.)"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from services.runtime.topology import shard_queue
from tests.support.own import Own
from tests.support.own_rabbit import PROJECT_CONSUMER_TIMEOUT_MS
from tests.support.polling import wait_for_instance

pytestmark = pytest.mark.faults


def test_an_operation_outliving_the_consumer_timeout_still_completes_once(
    own: Own, settings_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Read by channels when they open: set before the services start.
    own.rabbit.set_consumer_timeout(5_000)
    try:
        with (
            own.cluster(settings_env, Path(tmp_path_factory.mktemp("slow")), shards=1) as stack,
            stack.client() as api,
        ):
            # The clone waits: an artificially slow step.
            slots = stack.pg_server.clone_slots(2, stack.env["EDFI_IM_RABBITMQ_URL"])
            try:
                r = api.post(
                    "/v2/dbInstances",
                    json={
                        "name": f"Slow {uuid.uuid4().hex[:6]}",
                        "databaseTemplate": "Minimal",
                    },
                )
                job_id = r.json()["jobId"]
                deadline = time.monotonic() + 60
                while api.get(f"/v2/jobs/{job_id}").json()["attempts"] < 2:
                    assert time.monotonic() < deadline, "the broker never redelivered"
                    time.sleep(0.5)
            finally:
                slots.release()
            done, _ = wait_for_instance(api, r.json()["id"], timeout=60)
            assert done["status"] == "Completed", done
            assert stack.pg_server.exists(done["databaseName"])
            assert len(stack.pg_server.databases_like(done["databaseName"])) == 1
            # The shard's consumer is back and works.
            deadline = time.monotonic() + 30
            while stack.broker.queue(stack.vhost, shard_queue(0)).get("consumers", 0) < 1:
                assert time.monotonic() < deadline, "no consumer came back on the shard"
                time.sleep(0.5)
            after = api.post(
                "/v2/dbInstances",
                json={"name": f"Next {uuid.uuid4().hex[:6]}", "databaseTemplate": "Minimal"},
            )
            assert wait_for_instance(api, after.json()["id"])[0]["status"] == "Completed"
    finally:
        own.rabbit.set_consumer_timeout(PROJECT_CONSUMER_TIMEOUT_MS)
