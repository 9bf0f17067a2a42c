"""The fault smoke `just test` runs (the rest of tests/faults runs in `just faults`): kill -9 of
the provisioner in the middle of a create while a RabbitMQ node is lost (the leader of the
shard's quorum queue when that is not the node the services use), on the suite's own PostgreSQL
and RabbitMQ clusters; the create completes once when they are back."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import pytest

from services.runtime.topology import shard_queue
from tests.support.own import Own
from tests.support.polling import wait_for_instance

pytestmark = pytest.mark.faults


def test_kill_9_of_the_provisioner_mid_create_during_a_node_loss(
    own: Own, settings_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    with (
        own.cluster(settings_env, Path(tmp_path_factory.mktemp("smoke")), shards=1) as stack,
        stack.client() as api,
    ):
        slots = stack.pg_server.clone_slots(2, stack.env["EDFI_IM_RABBITMQ_URL"])
        try:
            r = api.post(
                "/v2/dbInstances",
                json={"name": f"Smoke {uuid.uuid4().hex[:6]}", "databaseTemplate": "Minimal"},
            )
            assert r.status_code == 202, r.text
            created = r.json()
            deadline = time.monotonic() + 30
            while api.get(f"/v2/jobs/{created['jobId']}").json()["status"] != "Running":
                assert time.monotonic() < deadline, "the create never started"
                time.sleep(0.1)
            # Mid-create (waiting for a clone slot): the provisioner and a broker node die.
            leader = stack.broker.queue(stack.vhost, shard_queue(0))["leader"]
            lost = next((n.index for n in own.rabbit.nodes[1:] if n.name == leader), 2)
            assert stack.stop("provisioner-0", sig=signal.SIGKILL) == -signal.SIGKILL
            own.rabbit.kill_node(lost)
        finally:
            slots.release()
        stack.start("provisioner-0", "provisioner")
        own.rabbit.restart_node(lost)
        done, _ = wait_for_instance(api, created["id"], timeout=60)
        # On a failure, why: the instance's error and each step of its job.
        steps = api.get(f"/v2/jobs/{created['jobId']}/history").json()
        assert done["status"] == "Completed", (done.get("error"), steps)
        job = api.get(f"/v2/jobs/{created['jobId']}").json()
        assert job["status"] == "Completed" and job["attempts"] >= 2, job
        assert stack.pg_server.databases_like(done["databaseName"]) == [done["databaseName"]]
        staging = f"edfi_im_staging_{uuid.UUID(created['jobId']).hex}"
        assert not stack.pg_server.exists(staging)
        dbo = stack.pg_server.query(
            stack.env["EDFI_IM_ADMIN_DATABASE_URL"].rsplit("/", 1)[1],
            "SELECT count(*) FROM dbo.odsinstances WHERE odsinstanceid = %s",
            (done["odsInstanceId"],),
        )
        assert dbo == [(1,)]
