"""Poison messages are dead-lettered, logged with the reason, never block their shard, and fail
their job visibly; `dead-letters requeue` sends one on again after a fix (invariants 1, 4)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest

from services.runtime.topology import PROVISIONER_DEAD_QUEUE, REQUESTS_EXCHANGE
from tests.support.flows import pending_create
from tests.support.own import Own
from tests.support.polling import wait_for_instance
from tests.support.stack import Stack

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def system(
    own: Own, settings_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with own.cluster(settings_env, Path(tmp_path_factory.mktemp("dead")), shards=1) as stack:
        yield stack


def _publish(stack: Stack, body: bytes, type_header: str, routing_key: str) -> str:
    message_id = str(uuid.uuid4())

    async def go() -> None:
        conn = await aio_pika.connect(stack.env["EDFI_IM_RABBITMQ_URL"])
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.get_exchange(REQUESTS_EXCHANGE)
        await ex.publish(
            aio_pika.Message(
                body,
                message_id=message_id,
                headers={"type": type_header},
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=routing_key,
        )
        await conn.close()

    asyncio.run(go())
    return message_id


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return stack.cli("dead-letters", *args)


def test_a_poison_command_fails_its_job_and_a_requeue_after_the_fix_completes_it(
    system: Stack, db_prefix: str
) -> None:
    # An accepted create whose command (for the test) was never published.
    pending = pending_create(
        system.env["EDFI_IM_ADMIN_DATABASE_URL"], db_prefix, f"Poisoned {uuid.uuid4().hex[:6]}"
    )
    instance_id, job_id = pending.instance_id, pending.job_id
    body = json.dumps(
        {
            "job_id": str(job_id),
            "instance_id": instance_id,
            "operation": "create",
            "database_name": "x",
            "database_template": "t",
        }
    ).encode()
    # A contract version this provisioner does not know: poison for it.
    mid = _publish(system, body, "edfi.instances.InstanceRequested.v9", str(instance_id))
    with system.client() as api:
        failed, _ = wait_for_instance(api, instance_id, timeout=30)
        assert failed["status"] == "Error"
        assert "dead-lettered" in failed["error"]
        job = api.get(f"/v2/jobs/{job_id}").json()
        assert job["status"] == "Failed" and "dead-lettered" in job["error"]

        # The shard is not blocked: a normal create behind it completes.
        r = api.post(
            "/v2/dbInstances",
            json={"name": f"Behind {uuid.uuid4().hex[:6]}", "databaseTemplate": "Minimal"},
        )
        assert wait_for_instance(api, r.json()["id"])[0]["status"] == "Completed"

        listed = _cli(system, "list")
        assert listed.returncode == 0, listed.stderr
        assert mid in listed.stdout and "rejected" in listed.stdout
        logs = system.log("provisioner-0").read_text()
        assert "poison command dead-lettered" in logs and "InstanceRequested.v9" in logs

        # "The fix": the provisioner now accepts the job's command (re-sent from the job as v1).
        done = _cli(system, "requeue", mid)
        assert done.returncode == 0, done.stderr
        assert "re-opened" in done.stdout
        completed, _ = wait_for_instance(api, instance_id, timeout=60)
        assert completed["status"] == "Completed", completed
        assert system.pg_server.exists(completed["databaseName"])
        assert mid not in _cli(system, "list").stdout


def test_an_unreadable_message_is_dead_lettered_and_listed(system: Stack) -> None:
    mid = _publish(system, b"\x00not json", "edfi.instances.InstanceRequested.v1", "1")
    deadline = time.monotonic() + 30
    while mid not in (out := _cli(system, "list").stdout):
        assert time.monotonic() < deadline, out
        time.sleep(0.5)
    refused = _cli(system, "requeue", str(uuid.uuid4()))
    assert refused.returncode == 1
    assert PROVISIONER_DEAD_QUEUE in refused.stderr
