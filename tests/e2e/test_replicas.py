"""Several provisioners: static shard ownership spreads the work, killing one hands its shards
to another within seconds, and a burst of operations under kill -9 keeps each instance's order
with never two operations of one instance executing at once (invariants 2, 3 and 4)."""

from __future__ import annotations

import itertools
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.messages import EVENT_TYPES, OUTCOMES
from services.runtime.topology import EVENTS_EXCHANGE, shard_queue
from tests.support import pg, rabbit
from tests.support.cluster import cluster as make_cluster
from tests.support.polling import wait_for_instance
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

SHARDS = 8


@pytest.fixture
def cluster(
    settings_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """gateway + status + two provisioners on their own vhost and admin database. Every attempt
    says Started at once (no progress delay): the burst's killer finds a busy provisioner by
    its job in Running, and a create of this size ends within the default delay (0.5 s), which
    would leave it Pending until its outcome."""
    with make_cluster(
        settings_env,
        Path(tmp_path_factory.mktemp("cluster")),
        provisioners=1,
        shards=SHARDS,
        EDFI_IM_PROGRESS_DELAY_SECONDS="0",
    ) as stack:
        stack.start("provisioner-b", "provisioner")
        yield stack


def active_connections(stack: Stack) -> dict[int, int]:
    """shard → peer port of the connection whose consumer is active on it."""
    out = {}
    for k in range(SHARDS):
        for c in rabbit.queue(stack.vhost, shard_queue(k)).get("consumer_details", []):
            details = c.get("channel_details")
            if c.get("active") and isinstance(details, dict):  # [] until stats are collected
                out[k] = details["peer_port"]
    return out


def wait_until(predicate: Any, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.1)
    raise TimeoutError(f"{what} not within {timeout}s")


def test_two_replicas_share_the_shards_and_a_killed_one_hands_over(cluster: Stack) -> None:
    wait_until(
        lambda: len(set(active_connections(cluster).values())) == 2, 30, "both replicas active"
    )
    with cluster.client() as api:
        ids = [
            api.post(
                "/v2/dbInstances",
                json={"name": f"Shared {i} {uuid.uuid4().hex[:6]}", "databaseTemplate": "Minimal"},
            ).json()["id"]
            for i in range(24)
        ]
        jobs = []
        for i in ids:
            done, _ = wait_for_instance(api, i)
            assert done["status"] == "Completed", done
            jobs.append(api.get(f"/v2/jobs/{done['jobId']}").json())
        workers = {j["worker"] for j in jobs}
        assert len(workers) == 2, f"work was not shared: {workers}"

        before = active_connections(cluster)
        cluster.stop("provisioner-0", sig=signal.SIGKILL)
        took = wait_until(
            lambda: (
                len(active_connections(cluster)) == SHARDS
                and len(set(active_connections(cluster).values())) == 1
            ),
            30,
            "handover to the surviving replica",
        )
        print(f"\nhandover after kill -9: {took:.2f}s (shards before: {before})")
        more = [
            api.post(
                "/v2/dbInstances",
                json={"name": f"After {i} {uuid.uuid4().hex[:6]}", "databaseTemplate": "Minimal"},
            ).json()["id"]
            for i in range(8)
        ]
        survivors = set()
        for i in more:
            done, _ = wait_for_instance(api, i)
            assert done["status"] == "Completed", done
            survivors.add(api.get(f"/v2/jobs/{done['jobId']}").json()["worker"])
        assert len(survivors) == 1
        assert survivors < workers


class EventRecorder:
    """A queue bound to every event: what the provisioners said, in the order they said it."""

    def __init__(self, stack: Stack) -> None:
        import asyncio

        import aio_pika

        self.queue = f"test.recorder.{uuid.uuid4().hex[:6]}"

        async def declare() -> None:
            conn = await aio_pika.connect(stack.env["EDFI_IM_RABBITMQ_URL"])
            ch = await conn.channel()
            q = await ch.declare_queue(self.queue, durable=True)
            await q.bind(EVENTS_EXCHANGE, routing_key="#")
            await conn.close()

        asyncio.run(declare())
        self.vhost = stack.vhost

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while batch := rabbit.take_messages(self.vhost, self.queue, count=1000):
            out += batch
        return out


def test_a_burst_under_kill_9_keeps_order_and_never_overlaps(cluster: Stack) -> None:
    wait_until(
        lambda: len(set(active_connections(cluster).values())) == 2, 30, "both replicas active"
    )
    recorder = EventRecorder(cluster)
    plan = ["create", "rename", "rename", "delete"]
    instances: dict[int, dict[str, Any]] = {}
    stop = threading.Event()
    kills: list[str] = []

    def killer() -> None:
        """Kill (-9) the provisioner that is running a job right now, then restart it."""
        with cluster.client() as probe:
            while not stop.is_set() and len(kills) < 6:
                running = probe.get("/v2/jobs", params={"status": "Running", "limit": 1}).json()
                pid = int(running[0]["worker"].rsplit(":", 1)[1]) if running else None
                victim = next(
                    (n for n, p in cluster.procs.items() if p.pid == pid and "prov" in n), None
                )
                if victim is None:
                    time.sleep(0.05)
                    continue
                cluster.stop(victim, sig=signal.SIGKILL)
                kills.append(victim)
                cluster.start(victim, "provisioner")
                stop.wait(1.5)

    with cluster.client() as api:
        for i in range(12):
            r = api.post(
                "/v2/dbInstances",
                json={"name": f"Burst {i} {uuid.uuid4().hex[:6]}", "databaseTemplate": "Sample"},
            )
            assert r.status_code == 202
            instances[r.json()["id"]] = {"step": 0, "jobs": [r.json()["jobId"]]}
        thread = threading.Thread(target=killer)
        thread.start()
        try:
            deadline = time.monotonic() + 240
            while any(s["step"] < len(plan) - 1 or s.get("pending") for s in instances.values()):
                assert time.monotonic() < deadline, instances
                for iid, state in instances.items():
                    body = api.get(f"/v2/dbInstances/{iid}").json()
                    if body["status"] in (
                        "Pending",
                        "InProgress",
                        "Pending_Rename",
                        "Pending_Delete",
                    ):
                        continue
                    state["pending"] = False
                    assert body["status"] in ("Completed", "Deleted"), body
                    if state["step"] == len(plan) - 1:
                        continue
                    state["step"] += 1
                    op = plan[state["step"]]
                    if op == "rename":
                        r = api.put(
                            f"/v2/dbInstances/{iid}",
                            json={"name": f"Burst {iid} r{state['step']} {uuid.uuid4().hex[:4]}"},
                        )
                    else:
                        r = api.delete(f"/v2/dbInstances/{iid}")
                    assert r.status_code == 202, r.text
                    state["jobs"].append(r.json()["jobId"])
                    state["pending"] = True
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join()
        print(f"\nkills: {kills}")

        redelivered = 0
        for iid, state in instances.items():
            final = api.get(f"/v2/dbInstances/{iid}").json()
            assert final["status"] == "Deleted", final
            jobs = [api.get(f"/v2/jobs/{j}").json() for j in state["jobs"]]
            assert [j["status"] for j in jobs] == ["Completed"] * len(plan), jobs
            redelivered += sum(j["attempts"] >= 2 for j in jobs)
            assert [j["type"] for j in jobs] == [
                "createInstance",
                "renameInstance",
                "renameInstance",
                "deleteInstance",
            ]
            assert not pg.exists(final["databaseName"])
        print(f"jobs that needed a second attempt: {redelivered}")
        assert redelivered >= 1, "no kill landed mid-operation: the test proved nothing"

    events = recorder.events()
    by_instance: dict[int, list[dict[str, Any]]] = {}
    for m in events:
        by_instance.setdefault(m["body"]["instance_id"], []).append(m)
    outcome_types = {t for t, cls in EVENT_TYPES.items() if cls in OUTCOMES}
    for iid, state in instances.items():
        seq = sorted(by_instance[iid], key=lambda m: m["body"]["occurred_at"])
        # The jobs ran in the order they were accepted: every event of job n comes before the
        # first event of job n+1 ...
        job_order = [m["body"]["job_id"] for m in seq]
        firsts = list(dict.fromkeys(job_order))
        assert firsts == state["jobs"], (iid, firsts, state["jobs"])
        for earlier, later in zip(state["jobs"], state["jobs"][1:], strict=False):
            last_of_earlier = max(i for i, j in enumerate(job_order) if j == earlier)
            first_of_later = job_order.index(later)
            assert last_of_earlier < first_of_later, f"instance {iid}: jobs overlap"
        # ... and within a job, an attempt that finished did so before the next one started.
        for job in state["jobs"]:
            spans = []
            for m in seq:
                if m["body"]["job_id"] != job:
                    continue
                t = m["properties"]["headers"]["type"]
                if t.endswith("InstanceOperationStarted.v1"):
                    spans.append([m["body"]["occurred_at"], None])
                elif t in outcome_types and spans and spans[-1][1] is None:
                    spans[-1][1] = m["body"]["occurred_at"]
            for (_, e1), (s2, _) in itertools.pairwise(spans):
                assert e1 is None or e1 <= s2, f"instance {iid} job {job}: attempts overlap"
