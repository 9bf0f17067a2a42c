"""The fault suite's engine: a mixed workload through the real services while faults are
injected, then checks that everything converged. Used by tests/faults/test_chaos.py (in `just
faults`) and by `just chaos` (a longer run); both print one summary line.

The faults hit the services and the suite's own servers (tests/support/own.py) only: kill -9 of
each service type, a provisioner stalled past the orphan threshold, the loss of one RabbitMQ
node (kill -9 of its beam process, then a restart), a restart of the whole RabbitMQ cluster,
every connection to the PostgreSQL cluster ended, and a restart of that cluster."""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import httpx
import psycopg

from contracts.messages import EVENT_TYPES, OUTCOMES
from services.rules import crypto
from services.rules.connection_strings import parse_connection_string
from services.runtime.topology import EVENTS_EXCHANGE
from tests.support.own import Own
from tests.support.stack import Stack

IN_FLIGHT = {"Pending", "InProgress", "Pending_Rename", "Pending_Delete"}
HAS_DATABASE = {"Completed", "Rename_Failed", "Delete_Failed"}
OUTCOME_TYPES = {t for t, cls in EVENT_TYPES.items() if cls in OUTCOMES}
FAULTS = (
    "kill_gateway",
    "kill_provisioner",
    "kill_status",
    "stall_provisioner",
    "lose_rabbitmq_node",
    "restart_rabbitmq",
    "drop_db_connections",
    "restart_postgresql",
)

# The summary lines of this session's runs: printed at the end (tests/faults/conftest.py).
SUMMARY_LINES: list[str] = []


@dataclass
class Summary:
    operations: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    duplicated: int = 0
    stuck: int = 0
    mismatches: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"chaos: operations={self.operations} faults={sum(self.faults.values())} "
            f"({', '.join(f'{k}={v}' for k, v in sorted(self.faults.items()))}) "
            f"lost={self.lost} duplicated={self.duplicated} stuck={self.stuck} "
            f"mismatches={self.mismatches} failed={self.failed}"
        )

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.stuck or self.mismatches or self.failed)


@dataclass
class Logical:
    """One instance the workload drives through its plan of operations."""

    name: str
    plan: list[str]
    step: int = 0
    id: int | None = None
    jobs: list[str] = field(default_factory=list)
    waiting: bool = False  # a request was sent; its outcome is not terminal yet
    unknown: bool = False  # the last request's answer was lost (gateway killed mid-request)


class Chaos:
    def __init__(
        self,
        stack: Stack,
        own: Own,
        *,
        seed: int,
        db_prefix: str,
        key: bytes,
        orphan_threshold: float,
    ) -> None:
        self.stack = stack
        self.own = own
        self.rnd = random.Random(seed)
        self.prefix = db_prefix
        self.key = key
        self.orphan_threshold = orphan_threshold
        self.summary = Summary()
        self.instances: list[Logical] = []
        self.accepted_jobs: set[str] = set()
        self.admin = stack.env["EDFI_IM_ADMIN_DATABASE_URL"]
        self.recorder = f"chaos.recorder.{uuid.uuid4().hex[:6]}"
        self.sentinels = [f"{db_prefix}sentinel_{uuid.uuid4().hex[:6]}" for _ in range(2)]

    # --- workload -------------------------------------------------------------------------
    def _plan(self) -> list[str]:
        return self.rnd.choice(
            [
                ["create"],
                ["create", "rename"],
                ["create", "delete"],
                ["create", "rename", "delete"],
                ["create", "rename", "rename"],
            ]
        )

    def _new(self) -> Logical:
        item = Logical(f"Chaos {uuid.uuid4().hex[:10]}", self._plan())
        self.instances.append(item)
        return item

    def _send(self, api: httpx.Client, item: Logical) -> None:
        op = item.plan[item.step]
        try:
            if op == "create":
                r = api.post(
                    "/v2/dbInstances",
                    json={
                        "name": item.name,
                        "databaseTemplate": self.rnd.choice(["Minimal", "Minimal", "Sample"]),
                    },
                )
            elif op == "rename":
                assert item.id is not None
                item.name = f"Chaos {uuid.uuid4().hex[:10]}"
                r = api.put(f"/v2/dbInstances/{item.id}", json={"name": item.name})
            else:
                r = api.delete(f"/v2/dbInstances/{item.id}")
        except httpx.HTTPError:
            item.unknown = True  # maybe committed, maybe not: find out from the instance
            return
        if r.status_code == 202:
            body = r.json()
            item.id = body["id"]
            item.jobs.append(body["jobId"])
            self.accepted_jobs.add(body["jobId"])
            item.waiting, item.unknown = True, False
            self.summary.operations += 1
        elif r.status_code >= 500 or r.status_code == 409:
            item.unknown = True  # the gateway or its database was down, or a retry's twin
        else:
            raise AssertionError(f"{op} refused: {r.status_code} {r.text}")

    def _resolve_unknown(self, api: httpx.Client, item: Logical) -> None:
        """After a lost answer: was the request accepted after all? Adopt its job, or resend."""
        op = item.plan[item.step]
        if op == "create":
            found = [i for i in self._all(api) if i["name"] == item.name]
            body = found[0] if found else None
        else:
            r = api.get(f"/v2/dbInstances/{item.id}")
            if r.status_code != 200:
                return  # still unknown: ask again later
            body = r.json()
        accepted = (
            body is not None
            and body["jobId"] not in item.jobs
            and (
                op == "create"
                or (op == "rename" and item.name in (body["name"], body.get("pendingName")))
                or (
                    op == "delete"
                    and body["status"] in ("Pending_Delete", "Deleted", "Delete_Failed")
                )
            )
        )
        if accepted:
            assert body is not None
            item.id = body["id"]
            item.jobs.append(body["jobId"])
            self.accepted_jobs.add(body["jobId"])
            self.summary.operations += 1
            item.waiting = True
        item.unknown = False

    def _all(self, api: httpx.Client) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for offset in itertools.count(0, 500):
            r = api.get("/v2/dbInstances", params={"offset": offset, "limit": 500})
            if r.status_code != 200:
                raise httpx.HTTPError(f"list answered {r.status_code}")
            page = r.json()
            out += page
            if len(page) < 500:
                return out
        return out

    def _tick(self, api: httpx.Client, item: Logical) -> None:
        if item.unknown:
            self._resolve_unknown(api, item)
            return
        if not item.waiting:
            self._send(api, item)
            return
        r = api.get(f"/v2/dbInstances/{item.id}")
        if r.status_code != 200:
            return  # the gateway or its database is down: ask again later
        body = r.json()
        if body["status"] in IN_FLIGHT:
            return
        item.waiting = False
        if body["status"] not in ("Completed", "Deleted"):
            item.step = len(item.plan)  # a failure: the plan stops here; the checks count it
            return
        item.step += 1

    def drive(self, api: httpx.Client, until: float, concurrency: int) -> None:
        """Start new plans until `until`; then finish the plans under way."""
        active = [self._new() for _ in range(concurrency)]
        hard_stop = until + 600
        while active and time.monotonic() < hard_stop:
            for n, item in enumerate(active):
                try:
                    if item.step < len(item.plan):
                        self._tick(api, item)
                    elif time.monotonic() < until:
                        active[n] = self._new()
                except httpx.HTTPError:
                    pass  # the gateway is down: try again on the next round
            active = [i for i in active if i.step < len(i.plan) or time.monotonic() < until]
            time.sleep(0.05)

    # --- faults ---------------------------------------------------------------------------
    def inject(self, until: float, interval: tuple[float, float], every_fault: bool) -> None:
        """Faults in a shuffled cycle until `until`; with `every_fault`, at least one of each
        kind however long they take (restarts are slow on a loaded machine)."""
        faults = itertools.cycle(self.rnd.sample(FAULTS, len(FAULTS)))
        tried = 0
        while time.monotonic() + interval[0] < until or (every_fault and tried < len(FAULTS)):
            tried += 1
            time.sleep(self.rnd.uniform(*interval))
            fault = next(faults)
            try:
                getattr(self, fault)()
                self.summary.faults[fault] += 1
            except Exception as exc:  # a fault that could not be injected is reported
                self.summary.problems.append(f"fault {fault} not injected: {exc!r}")

    def _kill(self, name: str) -> None:
        service = name.split("-")[0]
        self.stack.stop(name, sig=signal.SIGKILL)
        time.sleep(self.rnd.uniform(0.2, 1.5))
        self.stack.start(name, service)

    def kill_gateway(self) -> None:
        self._kill("gateway")

    def kill_status(self) -> None:
        self._kill("status")

    def kill_provisioner(self) -> None:
        self._kill(self.rnd.choice([n for n in self.stack.procs if n.startswith("provisioner")]))

    def lose_rabbitmq_node(self) -> None:
        """kill -9 of the beam process of a node the services are not connected to (queue
        leaders on it move), a restart after a while."""
        self.own.rabbit.lose_node(self.rnd.choice([2, 3]), down=self.rnd.uniform(0.5, 3))

    def restart_rabbitmq(self) -> None:
        """The broker restart: every node of the cluster stopped, then started again."""
        self.own.rabbit.restart(down=self.rnd.uniform(0.5, 2))

    def drop_db_connections(self) -> None:
        """Every client connection to the suite's PostgreSQL cluster ends."""
        self.own.pg.terminate_connections()

    def restart_postgresql(self) -> None:
        """The suite's PostgreSQL cluster restarts (fast shutdown: sessions end, then a
        clean start)."""
        self.own.pg.restart()

    def stall_provisioner(self) -> None:
        """A provisioner stops answering (SIGSTOP) past the orphan threshold, then resumes."""
        name = self.rnd.choice([n for n in self.stack.procs if n.startswith("provisioner")])
        proc = self.stack.procs[name]
        proc.send_signal(signal.SIGSTOP)
        time.sleep(self.orphan_threshold + 2)
        proc.send_signal(signal.SIGCONT)

    # --- recording and checks -------------------------------------------------------------
    def start_recording(self) -> None:
        async def declare() -> None:
            conn = await aio_pika.connect(self.stack.env["EDFI_IM_RABBITMQ_URL"])
            ch = await conn.channel()
            q = await ch.declare_queue(
                self.recorder, durable=True, arguments={"x-queue-type": "quorum"}
            )
            await q.bind(EVENTS_EXCHANGE, routing_key="#")
            await conn.close()

        asyncio.run(declare())
        for name in self.sentinels:  # someone else's databases, with our prefix: never touched
            self.stack.pg_server.create(name, comment_text="not the instance manager's")

    def wait_converged(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._open_jobs():
                return
            time.sleep(1)

    def _open_jobs(self) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.admin, autocommit=True) as c:
            return c.execute(
                "SELECT id, type, status, instance_id FROM edfi_im.jobs "
                "WHERE status NOT IN ('Completed', 'Failed')"
            ).fetchall()

    def check(self) -> Summary:
        s = self.summary
        with psycopg.connect(self.admin, autocommit=True) as c:
            jobs = {
                str(r[0]): r
                for r in c.execute(
                    "SELECT id, status, error, instance_id FROM edfi_im.jobs"
                ).fetchall()
            }
            instances = c.execute(
                "SELECT id, name, status, databasename, odsinstanceid FROM edfi_im.dbinstances"
            ).fetchall()
            dbo = {
                r[0]: r
                for r in c.execute(
                    "SELECT odsinstanceid, name, connectionstring FROM dbo.odsinstances"
                ).fetchall()
            }
        for job_id in self.accepted_jobs:
            if job_id not in jobs:
                s.lost += 1
                s.problems.append(f"accepted job {job_id} is not in edfi_im.jobs")
        for job_id, status, error, iid in jobs.values():
            if status not in ("Completed", "Failed"):
                s.stuck += 1
                s.problems.append(f"job {job_id} (instance {iid}) is still {status}")
            elif status == "Failed":
                s.failed += 1
                s.problems.append(f"job {job_id} (instance {iid}) failed: {error}")
        expected_dbs, expected_dbo = set(), {}
        for iid, name, status, database, ods_id in instances:
            if status in IN_FLIGHT:
                s.stuck += 1
                s.problems.append(f"instance {iid} is still {status}")
            if status in HAS_DATABASE:
                expected_dbs.add(database)
                if ods_id is not None:
                    expected_dbo[ods_id] = (name, database)
        on_server = set(self.stack.pg_server.databases_like(self.prefix.replace("_", r"\_") + "%"))
        for name in self.sentinels:
            if name not in on_server:
                s.mismatches += 1
                s.problems.append(f"someone else's database {name} was dropped")
        on_server -= set(self.sentinels)
        for db in sorted(expected_dbs - on_server):
            s.mismatches += 1
            s.problems.append(f"database {db} should exist and does not")
        for db in sorted(on_server - expected_dbs):
            s.mismatches += 1
            s.problems.append(f"database {db} exists but no instance should have it")
        staging = self.stack.pg_server.databases_like(r"edfi\_im\_staging\_%")
        mine = {j.replace("-", "") for j in jobs}
        for db in staging:
            if db.removeprefix("edfi_im_staging_") in mine:
                s.duplicated += 1
                s.problems.append(f"a clone was left behind: {db}")
        if set(dbo) != set(expected_dbo):
            s.mismatches += len(set(dbo) ^ set(expected_dbo))
            s.problems.append(f"dbo.odsinstances {sorted(dbo)} != live {sorted(expected_dbo)}")
        for ods_id, (name, database) in expected_dbo.items():
            if ods_id in dbo:
                _, dbo_name, stored = dbo[ods_id]
                opened = parse_connection_string(crypto.decrypt(stored, self.key))["database"]
                if (dbo_name, opened) != (name, database):
                    s.mismatches += 1
                    s.problems.append(f"dbo row {ods_id} says {dbo_name}/{opened}")
        s.duplicated += self._overlaps()
        return s

    def _overlaps(self) -> int:
        """Two executions of one instance at once: a span (Started → outcome, same worker)
        overlapping another span of the same instance."""
        events = []
        while batch := self.stack.broker.take_messages(self.stack.vhost, self.recorder, 5000):
            events += batch
        spans: dict[int, list[tuple[str, str]]] = {}
        open_: dict[tuple[str, str], str] = {}
        for m in sorted(events, key=lambda m: m["body"]["occurred_at"]):
            body, kind = m["body"], m["properties"]["headers"]["type"]
            key = (body["job_id"], body.get("worker") or "?")
            if kind.endswith("InstanceOperationStarted.v1"):
                open_[key] = body["occurred_at"]
            elif kind in OUTCOME_TYPES and key in open_:
                spans.setdefault(body["instance_id"], []).append(
                    (open_.pop(key), body["occurred_at"])
                )
        bad = 0
        for iid, items in spans.items():
            items.sort()
            for (_, e1), (s2, _) in itertools.pairwise(items):
                if s2 < e1:
                    bad += 1
                    self.summary.problems.append(f"instance {iid}: executions overlap")
        return bad


def run(
    stack: Stack,
    own: Own,
    *,
    seconds: float,
    seed: int,
    db_prefix: str,
    key: bytes,
    concurrency: int,
    fault_interval: tuple[float, float],
    orphan_threshold: float,
    converge_timeout: float,
    every_fault: bool = False,
) -> Summary:
    """Faults for `seconds` while the workload runs (with `every_fault`, longer if need be,
    until each kind of fault has happened under the workload); then the plans under way
    finish, and within `converge_timeout` everything must have settled."""
    chaos = Chaos(
        stack, own, seed=seed, db_prefix=db_prefix, key=key, orphan_threshold=orphan_threshold
    )
    chaos.start_recording()
    until = time.monotonic() + seconds
    injector = threading.Thread(
        target=chaos.inject, args=(until, fault_interval, every_fault), daemon=True
    )
    injector.start()
    with stack.client() as api:
        chaos.drive(api, until, concurrency)
        while injector.is_alive():  # the last kinds of fault still to come: keep the load on
            chaos.drive(api, time.monotonic() + 5, concurrency)
    injector.join()
    stack.wait_ready(timeout=120)
    chaos.wait_converged(converge_timeout)
    summary = chaos.check()
    SUMMARY_LINES.append(summary.line())
    return summary
