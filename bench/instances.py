"""Where an instance's time goes, each figure beside what an operator would do by hand, in one
run on one machine (`just bench`; `just bench-quick` for a shorter run). Prints a table and each
ratio of issue 18 beside its goal; writes JSON and a markdown table to bench/results/, with the
machine's load average at the start and the end (figures from a busy machine are not the
system's).

The services run as real processes (as `just up` runs them) against a fresh admin database and
RabbitMQ vhost; every database the bench creates is dropped at the end.

0. Clone concurrency sweep: bare clones at 1, 2, 3, 4, 6, 8 at once, for the small and the
   large template: what the server sustains. The concurrency that does best for both is the
   one the stacks run with (EDFI_IM_CLONE_CONCURRENCY), and is printed.
1. Clone overhead: POST -> `Completed` seen on the job's event stream, against a bare
   `CREATE DATABASE ... TEMPLATE ...` of the same template (every bare clone here runs on a
   kept session, as the provisioner's do: `bare_session`), for the tiny development template
   and for a ~100 MB template the bench generates; and against the design's floor
   (bench/floor.py: the hops DESIGN.md requires, made by the plainest code), which says how
   much of the overhead the hops themselves cost on this machine, and against the services'
   every statement on that path made by the same plain code (its `lean` chain) and in three
   plain processes followed on an event stream (bench/lean_stack.py), which say how much the
   guarantees' statements and the design's processes add and how much the services' code. Rounds
   interleaved, after three warm-up creates (a new stack's first ones are not its steady
   state).
2. Bulk: N creates requested at once until all have ended (timed from the load generator's
   first request, not from its process's start), against N sequential bare clones,
   for both templates (fewer of the large one: disk), with 8 shards and (full mode) one shard.
3. Sustained pipeline: creates offered at a fixed rate for 60 s (open loop), backlog sampled
   every second; the highest rate kept up with (backlog bounded, the rest ended within 10 s)
   against the sequential bare clone rate kept up for the same 60 s (first 80 % of it, then up
   or down). The server cannot keep its short-burst rate for a minute (each clone of the small
   template writes ~7 MB of WAL, and checkpoints follow), so the burst rate of the bulk's 200
   bare clones is printed beside it, and the ratio to it.
4. Paging: `GET /v2/dbInstances` over 10,000 rows against the same SELECT run directly.
5. Accept path: `POST /v2/dbInstances` from a separate load-generator process (bench/load.py)
   at a fixed concurrency, against `GET /health` at the same concurrency (the HTTP floor):
   throughput ratio, and the gateway's CPU time per request.
Peak memory (VmHWM) of each service process is reported for each stack.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from bench.common import percentile, write_results
from bench.floor import Running
from bench.lean_stack import LeanStack
from services.runtime.templates import ensure_templates
from tests.support import pg, rabbit
from tests.support.stack import ROOT, Stack

TINY = "EdFi_Ods_Minimal_Template"
POLL_SECONDS = 0.01  # how often the bench polls the API for a status


def summary(values: list[float]) -> dict[str, Any]:
    """Median and p99 in ms, with the run count."""
    return {
        "runs": len(values),
        "p50_ms": round(statistics.median(values) * 1000, 1),
        "p99_ms": round(percentile(values, 99) * 1000, 1),
    }


def ratio(system: dict[str, Any], baseline: dict[str, Any]) -> float:
    return round(system["p50_ms"] / baseline["p50_ms"], 2) if baseline["p50_ms"] else 0.0


_BARE = threading.local()


def bare_session() -> psycopg.Connection[Any]:
    """This thread's session for bare clones, kept from one clone to the next. The provisioner
    clones on a kept session too, and a new session is no fair baseline: besides connecting, a
    new backend's first CREATE DATABASE took about 5 ms longer here (its caches are cold;
    30 and 40 interleaved pairs, 2026-11-28)."""
    conn: psycopg.Connection[Any] | None = getattr(_BARE, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(pg.SERVER, autocommit=True)
        _BARE.conn = conn
    return conn


def end_bare_session() -> None:
    conn: psycopg.Connection[Any] | None = getattr(_BARE, "conn", None)
    if conn is not None:
        conn.close()
        _BARE.conn = None


def bare_clone(template: str, target: str) -> float:
    """What an operator's session does: CREATE DATABASE ... TEMPLATE ..., timed, on this
    thread's kept session (`bare_session`)."""
    c = bare_session()
    started = time.perf_counter()
    c.execute(
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(target), sql.Identifier(template)
        )
    )
    return time.perf_counter() - started


def make_large_template(name: str, megabytes: int) -> int:
    """A template of about `megabytes` MB (one table of random-looking text); its size in MB."""
    pg.drop(name)
    pg.create(name)
    rows = megabytes * 1024 * 1024 // 140  # a row takes about 140 bytes on disk
    with psycopg.connect(pg.database_url(name), autocommit=True) as c:
        c.execute("CREATE TABLE filler (id bigint PRIMARY KEY, payload text NOT NULL)")
        c.execute(
            "INSERT INTO filler SELECT g, md5(g::text) || md5((g * 7)::text) "
            "FROM generate_series(1, %s) g",
            (rows,),
        )
        c.execute("VACUUM ANALYZE filler")
    with psycopg.connect(pg.SERVER, autocommit=True) as c:
        c.execute(
            sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(
                sql.Identifier(name)
            )
        )
        size = c.execute("SELECT pg_database_size(%s)", (name,)).fetchone()
    assert size is not None
    return int(size[0]) // (1024 * 1024)


def drop_template(name: str) -> None:
    with psycopg.connect(pg.SERVER, autocommit=True) as c:
        c.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(sql.Identifier(name)))
    pg.drop(name)


def peak_memory_mb(stack: Stack) -> dict[str, float]:
    """VmHWM (the resident set's high-water mark) of each service process."""
    out = {}
    for name, proc in stack.procs.items():
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                out[name] = round(int(line.split()[1]) / 1024, 1)
    return out


class Bench:
    """One stack (own vhost and admin database) and its client."""

    def __init__(
        self,
        tag: str,
        prefix: str,
        shard_count: int,
        templates: dict[str, str],
        clone_concurrency: int = 2,
    ) -> None:
        self.tag = tag
        self.clone_concurrency = clone_concurrency
        self.prefix = prefix
        self.vhost = f"edfi_im_bench_{tag}"
        self.database = f"edfi_im_bench_{tag}"
        env = {
            "EDFI_IM_ENVIRONMENT": "development",
            "EDFI_IM_ADMIN_DATABASE_URL": pg.database_url(self.database),
            "EDFI_IM_ODS_SERVER_URL": pg.SERVER,
            "EDFI_IM_RABBITMQ_URL": rabbit.amqp_url(self.vhost),
            "EDFI_IM_DATABASE_NAME_PATTERN": prefix + "{name}",
            "EDFI_IM_SHARD_COUNT": str(shard_count),
            "EDFI_IM_CLONE_CONCURRENCY": str(clone_concurrency),
            "EDFI_IM_TEMPLATES": json.dumps(templates),
            "EDFI_IM_REGISTRATION_ENABLED": "true",
            "EDFI_IM_TOKEN_LIFETIME_SECONDS": "7200",
            "EDFI_IM_STANDBY_DELAY_SECONDS": "1",
            "EDFI_IM_LOG_FORMAT": "json",
            "EDFI_IM_LOG_LEVEL": "WARNING",
            # The services as production runs them: new interpreters, not the tests' forks of
            # a warm one (tests/support/forked.py), so memory and start-up are their own.
            "EDFI_IM_TEST_SPAWN": "exec",
        }
        # The development template, as `just setup` makes it: a fresh machine has none yet.
        ensure_templates(pg.SERVER, {"Minimal": TINY})
        rabbit.create_vhost(self.vhost)
        pg.edfi_admin(self.database)
        self.stack = Stack(
            env=env,
            log_dir=Path(tempfile.mkdtemp(prefix="edfi-im-bench-")),
            vhost=self.vhost,
            shard_count=shard_count,
        )
        self.ports: dict[str, int] = {}
        self.memory: dict[str, float] = {}

    def start(self) -> None:
        from tests.support.stack import free_port

        for name in ("status", "provisioner"):
            self.ports[name] = free_port()
            self.stack.start(name, EDFI_IM_HEALTH_PORT=str(self.ports[name]))
        self.stack.start("gateway")
        self.stack.wait_ready(timeout=120)
        self.token = self.stack.new_token()
        self.api = httpx.Client(
            base_url=self.stack.url,
            timeout=30,
            headers={"Authorization": f"Bearer {self.token}"},
        )

    def close(self) -> None:
        self.memory.update(peak_memory_mb(self.stack))
        self.stack.stop_all()
        rabbit.delete_vhost(self.vhost)
        pg.drop(self.database)

    def create(self, name: str, template: str) -> int:
        r = self.api.post("/v2/dbInstances", json={"name": name, "databaseTemplate": template})
        r.raise_for_status()
        instance_id: int = r.json()["id"]
        return instance_id

    def create_and_follow(self, name: str, template: str, timeout: float = 600) -> str:
        """POST a create, then follow its job's event stream (GET /v2/jobs/{id}/events, which
        ends when the job ends): what a client does to learn the outcome at once, without
        polling. The job's last status."""
        r = self.api.post("/v2/dbInstances", json={"name": name, "databaseTemplate": template})
        r.raise_for_status()
        job_id = r.json()["jobId"]
        status = "?"
        with self.api.stream("GET", f"/v2/jobs/{job_id}/events", timeout=timeout) as events:
            events.raise_for_status()
            for line in events.iter_lines():
                if line.startswith("data:") and '"status"' in line:
                    data = json.loads(line[5:])
                    if "progressPercent" in data or "type" in data:  # a job's frame
                        status = data.get("status", status)
        return status

    def until_completed(self, instance_id: int, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.api.get(f"/v2/dbInstances/{instance_id}").json()["status"]
            if status == "Completed":
                return
            if status in ("Error", "Deleted"):
                raise RuntimeError(f"instance {instance_id} ended {status}")
            time.sleep(POLL_SECONDS)
        raise TimeoutError(f"instance {instance_id} not Completed in {timeout}s")

    def all_completed(self, ids: set[int], timeout: float = 1800) -> None:
        # One connection for the whole wait: a new one every 20 ms would start a backend each
        # time, CPU taken from the system being measured.
        deadline = time.monotonic() + timeout
        with psycopg.connect(pg.database_url(self.database), autocommit=True) as c:
            while time.monotonic() < deadline:
                row = c.execute(
                    "SELECT count(*) FROM edfi_im.dbinstances WHERE id = ANY(%s) "
                    "AND status IN ('Completed', 'Error')",
                    (list(ids),),
                ).fetchone()
                if row is not None and row[0] == len(ids):
                    return
                time.sleep(0.02)
        raise TimeoutError(f"{len(ids)} creates not all done in {timeout}s")

    def load(self, *args: str) -> dict[str, Any]:
        """bench/load.py as its own process."""
        command = [sys.executable, "-m", "bench.load", "--url", self.stack.url]
        out = subprocess.run(  # noqa: S603 - our own module, our own arguments
            [*command, "--token", self.token, *args],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def status_metric(self, name: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.ports['status']}/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")
        )


def drop_prefixed(prefix: str) -> None:
    """Drop the bench's databases, eight at a time: each DROP DATABASE waits for a checkpoint,
    and drops that wait together share one."""
    names = pg.databases_like(prefix.replace("_", r"\_") + "%")
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(pg.drop, names))


def clone_overhead(
    b: Bench,
    templates: dict[str, str],
    runs: int,
    floor: Running | None = None,
    lean_stack: LeanStack | None = None,
) -> list[dict[str, Any]]:
    """Each template's creates against bare clones (and, given `floor`, against the design's
    floor and the lean chain: the same hops, and the services' every statement, made by the
    plainest code, bench/floor.py; given `lean_stack`, against those statements in three plain
    processes, bench/lean_stack.py), in interleaved rounds: which goes first turns each run,
    so none always gets the warmer cache. Three warm-up creates first (and of each of the
    others): a new stack's first ones are not its steady state."""
    for k in range(3):
        b.create_and_follow(f"Warm {k}", "Minimal")
        if floor is not None:
            floor.chain(TINY, f"{b.prefix}warm_{k}")
            floor.lean_chain(TINY, f"{b.prefix}warm_lean_{k}")
        if lean_stack is not None:
            lean_stack.create_and_follow(f"{b.prefix}warm_stack_{k}", TINY)
    rows = []
    kinds = (
        ["system", "bare"]
        + (["floor", "lean"] if floor is not None else [])
        + (["lean stack"] if lean_stack is not None else [])
    )
    for key, template in templates.items():
        timed: dict[str, list[float]] = {kind: [] for kind in kinds}
        for i in range(runs):
            for kind in kinds[i % len(kinds) :] + kinds[: i % len(kinds)]:
                if kind == "system":
                    started = time.perf_counter()
                    ended = b.create_and_follow(f"Overhead {key} {i}", key)
                    timed[kind].append(time.perf_counter() - started)
                    if ended != "Completed":
                        raise RuntimeError(f"create of {key} ended {ended}")
                elif kind == "bare":
                    timed[kind].append(bare_clone(template, f"{b.prefix}bare_{key}_{i}"))
                elif kind == "lean stack":
                    assert lean_stack is not None
                    target = f"{b.prefix}stack_{key}_{i}"
                    started = time.perf_counter()
                    ended = lean_stack.create_and_follow(target, template)
                    timed[kind].append(time.perf_counter() - started)
                    if ended != "Completed":
                        raise RuntimeError(f"the lean stack's create of {key} ended {ended}")
                elif kind == "floor":
                    assert floor is not None
                    timed[kind].append(floor.chain(template, f"{b.prefix}floor_{key}_{i}"))
                else:
                    assert floor is not None
                    timed[kind].append(floor.lean_chain(template, f"{b.prefix}lean_{key}_{i}"))
            drop_prefixed(b.prefix)
        s, base = summary(timed["system"]), summary(timed["bare"])
        row: dict[str, Any] = {
            "template": key,
            "database": template,
            "system": s,
            "bare": base,
            "ratio": ratio(s, base),
            # Median of each run's create minus the bare clone beside it (ms).
            "overheadMs": paired_overhead_ms(timed["system"], timed["bare"]),
        }
        for kind, field in (("floor", "floor"), ("lean", "lean"), ("lean stack", "leanStack")):
            if kind in timed:
                row[field] = summary(timed[kind])
                row[f"{field}Ratio"] = ratio(row[field], base)
                row[f"{field}OverheadMs"] = paired_overhead_ms(timed[kind], timed["bare"])
        rows.append(row)
    return rows


def paired_overhead_ms(measured: list[float], bare: list[float]) -> float:
    return round(statistics.median(m - x for m, x in zip(measured, bare, strict=True)) * 1000, 1)


def bulk(
    b: Bench, count: int, runs: int, template: str = "Minimal", database: str = TINY
) -> dict[str, Any]:
    system, bare = [], []
    procs = {name: proc.pid for name, proc in b.stack.procs.items()}
    cpu_before = {name: cpu_seconds(pid) for name, pid in procs.items()}
    cpu: dict[str, float] = {}
    for run in range(runs):
        result = b.load(
            "--mode",
            "create",
            "--count",
            str(count),
            "--concurrency",
            "50",
            "--template",
            template,
            "--prefix",
            f"Bulk {template} {run}",
        )
        ids = set(result["ids"])
        if len(ids) != count:
            raise RuntimeError(f"only {len(ids)} of {count} creates accepted: {result}")
        b.all_completed(ids)
        # From the first request the load generator sent (its own start-up, a new Python
        # process, is not the system's time), on the wall clock both processes share.
        system.append(time.time() - result["startedAt"])
        if run == 0:
            # CPU each service spent per create (the first run only: no drops in it).
            cpu = {
                name: round((cpu_seconds(pid) - cpu_before[name]) * 1000 / count, 2)
                for name, pid in procs.items()
            }
        drop_prefixed(b.prefix)
        started = time.perf_counter()
        for k in range(count):
            bare_clone(database, f"{b.prefix}seq_{run}_{k}")
        bare.append(time.perf_counter() - started)
        drop_prefixed(b.prefix)
    s, base = summary(system), summary(bare)
    return {
        "template": template,
        "instances": count,
        "shards": b.stack.shard_count,
        "cloneConcurrency": b.clone_concurrency,
        "cpuMsPerCreate": cpu,
        "system": s,
        "bare": base,
        "ratio": ratio(s, base),
    }


def sweep(template: str, prefix: str, clones: int, levels: list[int]) -> dict[str, Any]:
    """What the server sustains: `clones` bare clones of `template` at each concurrency (that
    many connections cloning at once, each taking the next name); clones a second at each."""
    rates: dict[int, float] = {}
    for level in levels:
        names = iter(range(clones))
        lock = threading.Lock()

        def worker(
            level: int = level, names: Iterator[int] = names, lock: threading.Lock = lock
        ) -> None:
            try:
                while True:
                    with lock:
                        k = next(names, None)
                    if k is None:
                        return
                    bare_clone(template, f"{prefix}sweep_{level}_{k}")
            finally:
                end_bare_session()

        started = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(level)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rates[level] = round(clones / (time.perf_counter() - started), 2)
        drop_prefixed(prefix)
    return {"clones": clones, "perSecond": rates}


def best_concurrency(small: dict[str, Any], large: dict[str, Any]) -> int:
    """The concurrency that does best for both templates: the highest of the two rates, each
    as a share of that template's best, taking the lower share (ties: fewer clones at once)."""
    score: dict[int, float] = {}
    best_small = max(small["perSecond"].values())
    best_large = max(large["perSecond"].values())
    for level, rate in small["perSecond"].items():
        other = large["perSecond"].get(level, 0.0)
        score[level] = min(rate / best_small, other / best_large)
    top = max(score.values())
    return min(level for level, v in score.items() if v >= top - 0.02)


def stages(b: Bench, ids: set[int]) -> dict[str, Any]:
    """Each stage of the creates `ids` from their own stamps (each the start of that step's
    transaction): accept -> relay, relay -> claim, claim -> finished."""
    rows = pg.query(
        b.database,
        "SELECT j.created_at, o.sent_at, j.claimed_at, j.finished_at, j.status "
        "FROM edfi_im.jobs j JOIN edfi_im.dbinstances i ON i.currentjobid = j.id "
        "JOIN edfi_im.outbox o ON (o.body->>'job_id')::uuid = j.id "
        "WHERE i.id = ANY(%s)",
        (list(ids),),
    )
    completed = [r for r in rows if r[4] == "Completed" and r[2] is not None]
    if not completed:
        return {}

    def stage(f: Callable[[tuple[Any, ...]], float]) -> dict[str, Any]:
        return summary([f(r) for r in completed])

    first = min(r[0] for r in completed)
    last = max(r[3] for r in completed)
    span = (last - first).total_seconds()
    return {
        "completed": len(completed),
        "jobsPerSecond": round(len(completed) / span, 2) if span else None,
        "endToEnd": stage(lambda r: (r[3] - r[0]).total_seconds()),
        "outboxRelay": stage(lambda r: (r[1] - r[0]).total_seconds()),
        "relayToClaim": stage(lambda r: (r[2] - r[1]).total_seconds()),
        "claimToFinished": stage(lambda r: (r[3] - r[2]).total_seconds()),
    }


def offer(b: Bench, rate: float, seconds: float, label: str) -> dict[str, Any]:
    """Creates offered at `rate` a second for `seconds` (open loop, bench/load.py); the backlog
    (accepted, not yet ended) sampled every second; then how long the rest took to end. Kept
    up: every create accepted and Completed, the backlog of the last third of the offer at most
    three seconds' worth (it did not grow), and the rest ended within 10 s of the offer."""
    name = f"Sustain {label}"
    command = [sys.executable, "-m", "bench.load", "--url", b.stack.url, "--token", b.token]
    load = subprocess.Popen(  # noqa: S603 - our own module, our own arguments
        [
            *command,
            *("--mode", "create", "--rate", str(rate), "--seconds", str(seconds)),
            *("--prefix", name, "--concurrency", "64"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    backlog: list[tuple[float, int]] = []
    began = time.perf_counter()

    def counts() -> tuple[int, int, int]:
        row = pg.query(
            b.database,
            "SELECT count(*), count(*) FILTER (WHERE status IN ('Completed', 'Error')), "
            "count(*) FILTER (WHERE status = 'Error') FROM edfi_im.dbinstances "
            "WHERE name LIKE %s",
            (name.replace("_", r"\_") + " %",),
        )[0]
        return int(row[0]), int(row[1]), int(row[2])

    while load.poll() is None:
        time.sleep(1.0)
        accepted, ended, _ = counts()
        backlog.append((round(time.perf_counter() - began, 1), accepted - ended))
    out, _ = load.communicate()
    result = json.loads(out)
    ids = set(result["ids"])
    offer_end = time.perf_counter()
    drain_limit = 10.0
    while True:
        accepted, ended, errors = counts()
        if ended >= len(ids) or time.perf_counter() - offer_end > drain_limit + 20:
            break
        time.sleep(0.1)
    drain = time.perf_counter() - offer_end
    tail = [v for t, v in backlog if t >= seconds * 2 / 3]
    bounded = max(tail or [0]) <= max(3 * rate, 5)
    kept = (
        bounded
        and drain <= drain_limit
        and errors == 0
        and result["errors"] == 0
        and set(result["statuses"]) == {"202"}
        and ended >= len(ids)
    )
    staged = stages(b, ids)
    drop_prefixed(b.prefix)
    return {
        "offeredPerSecond": rate,
        "sentPerSecond": result["perSecond"],
        "seconds": seconds,
        "accepted": len(ids),
        "ended": ended,
        "errors": errors + result["errors"],
        "statuses": result["statuses"],
        "acceptP50_ms": result["p50_ms"],
        "backlog": backlog,
        "maxBacklogLastThird": max(tail or [0]),
        "drain_s": round(drain, 2),
        "keptUp": kept,
        "stages": staged,
    }


def bare_sequential_rate(prefix: str, seconds: float) -> dict[str, Any]:
    """Bare sequential clones of the small template for `seconds` (as long as one offer of the
    sustained pipeline): the clones a second the server keeps up that long, and how the rate
    went (per 100 clones)."""
    started = time.perf_counter()
    count, marks = 0, []
    while time.perf_counter() - started < seconds:
        bare_clone(TINY, f"{prefix}sustain_{count}")
        count += 1
        if count % 100 == 0:
            marks.append([count, round(time.perf_counter() - started, 1)])
    rate = round(count / (time.perf_counter() - started), 2)
    drop_prefixed(prefix)
    return {"clones": count, "seconds": seconds, "perSecond": rate, "marks": marks}


def sustained(b: Bench, burst_rate: float, seconds: float, trials: int) -> dict[str, Any]:
    """The highest offered create rate the system keeps up with, as a share of the sequential
    bare clone rate kept up as long (`seconds`): first 80 % (the goal); then up by a quarter
    while it keeps up and no rate above has failed, else halfway between the highest kept and
    the lowest failed (halving while nothing was kept); `trials` offers of `seconds` each.
    `burst_rate`: the bulk's 200 sequential bare clones a second, shown beside it."""
    print(f"  bare sequential clones for {seconds:g} s ...", flush=True)
    bare = bare_sequential_rate(b.prefix, seconds)
    bare_rate = bare["perSecond"]
    tried = []
    kept_share, failed_share = 0.0, None
    share = 0.8
    for k in range(trials):
        rate = round(share * bare_rate, 1)
        print(f"  offering {rate}/s for {seconds:g} s ...", flush=True)
        result = offer(b, rate, seconds, f"t{k}")
        tried.append(result)
        if result["keptUp"]:
            kept_share = share
            share = share * 1.25 if failed_share is None else (share + failed_share) / 2
        else:
            failed_share = share
            share = share / 2 if kept_share == 0 else (kept_share + share) / 2
    kept = [t for t in tried if t["keptUp"]]
    best = max(kept, key=lambda t: t["offeredPerSecond"]) if kept else None
    kept_rate = best["offeredPerSecond"] if best else 0.0
    return {
        "bareClonesPerSecond": bare_rate,
        "bareSustained": bare,
        "burstClonesPerSecond": burst_rate,
        "trials": tried,
        "keptUpPerSecond": kept_rate,
        "ratio": round(kept_rate / bare_rate, 2) if bare_rate else 0.0,
        "ratioToBurst": round(kept_rate / burst_rate, 2) if burst_rate else 0.0,
    }


def paging(b: Bench, rows: int, pages: int) -> dict[str, Any]:
    """10,000 rows inserted directly; then random pages through the API and straight SQL."""
    with psycopg.connect(pg.database_url(b.database), autocommit=True) as c:
        c.execute(
            "INSERT INTO edfi_im.dbinstances (name, status, databasetemplate, databasename, "
            "imported, createdat, lastmodifieddate, lastrefreshed) "
            "SELECT 'Page ' || g, 'Completed', 'Minimal', %s || 'Page_' || g, false, now(), "
            "now(), now() FROM generate_series(1, %s) g",
            (b.prefix, rows),
        )
        # What autovacuum does on its own soon after a bulk insert (its insert threshold): the
        # table as it is once settled, with its visibility map set.
        c.execute("VACUUM ANALYZE edfi_im.dbinstances")
    time.sleep(3)  # the gateway's change feed takes in the 10,000 inserts first
    api, direct, same = [], [], []
    with psycopg.connect(pg.database_url(b.database), autocommit=True) as c:
        for k in range(pages):
            offset = (k * 7919) % (rows - 25)
            started = time.perf_counter()
            r = b.api.get("/v2/dbInstances", params={"offset": offset, "limit": 25})
            r.raise_for_status()
            api.append(time.perf_counter() - started)
            started = time.perf_counter()
            c.execute(
                "SELECT * FROM edfi_im.dbinstances ORDER BY id OFFSET %s LIMIT 25", (offset,)
            ).fetchall()
            direct.append(time.perf_counter() - started)
            # The statement the API sends (ids by an index-only scan, then their rows).
            started = time.perf_counter()
            c.execute(
                "SELECT * FROM edfi_im.dbinstances WHERE id IN (SELECT id FROM "
                "edfi_im.dbinstances ORDER BY id OFFSET %s LIMIT 25) ORDER BY id",
                (offset,),
            ).fetchall()
            same.append(time.perf_counter() - started)
        started = time.perf_counter()
        offset = 0
        while True:
            page = b.api.get("/v2/dbInstances", params={"offset": offset, "limit": 500}).json()
            if not page:
                break
            offset += len(page)
        walk = time.perf_counter() - started
    s, base, own = summary(api), summary(direct), summary(same)
    return {
        "rows": rows,
        "page": s,
        "bareSelect": base,
        "ratio": ratio(s, base),
        "apiStatement": own,
        "ratioToApiStatement": ratio(s, own),
        "walkAllRows_s": round(walk, 2),
        "walkPageSize": 500,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def accept(b: Bench, concurrency: int, seconds: float) -> dict[str, Any]:
    # The provisioner is stopped: the accepted commands wait in their queues (dropped with the
    # vhost), so clones do not share the machine with the gateway.
    b.memory.update(peak_memory_mb(b.stack))  # the provisioner's, before it stops
    b.stack.stop("provisioner")
    gateway = b.stack.procs["gateway"].pid
    measured = {}
    for mode in ("health", "create"):
        cpu = cpu_seconds(gateway)
        r = b.load(
            "--mode",
            mode,
            "--concurrency",
            str(concurrency),
            "--seconds",
            str(seconds),
            "--prefix",
            "Accept",
        )
        r = {k: v for k, v in r.items() if k != "ids"}
        r["gatewayCpuMsPerRequest"] = round(
            (cpu_seconds(gateway) - cpu) * 1000 / max(1, r["requests"]), 2
        )
        measured[mode] = r
    create, health = measured["create"], measured["health"]
    return {
        "concurrency": concurrency,
        "create": create,
        "health": health,
        "ratio": round(create["perSecond"] / health["perSecond"], 2)
        if health["perSecond"]
        else 0.0,
        "latencyRatio": round(create["p50_ms"] / health["p50_ms"], 2) if health["p50_ms"] else None,
    }


@contextmanager
def bench_stack(
    tag: str, prefix: str, shards: int, templates: dict[str, str], clone_concurrency: int
) -> Iterator[Bench]:
    for attempt in range(3):
        b = Bench(f"{tag}{attempt or ''}", prefix, shards, templates, clone_concurrency)
        try:
            b.start()
            break
        except RuntimeError as exc:
            b.close()
            # A free port taken by another process before the service bound it: new ports.
            if "address already in use" not in str(exc) or attempt == 2:
                raise
            print("  a port was taken meanwhile: starting the stack again", flush=True)
    try:
        yield b
    finally:
        b.close()


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each ratio of issue 18 beside its goal."""
    rows: list[dict[str, Any]] = []

    def goal(measure: str, value: float | None, op: str, target: float) -> None:
        met = value is not None and (
            value <= target if op == "<=" else value < target if op == "<" else value >= target
        )
        rows.append({"measure": measure, "ratio": value, "goal": f"{op} {target:g}", "met": met})

    for r in results["cloneOverhead"]:
        target = 1.25 if r["template"] == "Minimal" else 1.05
        goal(
            f"one create / bare clone, {r['template']} ({r['sizeMB']} MB)", r["ratio"], "<=", target
        )
    for r in results["bulk"]:
        if r["shards"] != results["defaultShards"]:
            continue
        op, target = ("<", 1.0) if r["template"] == "Minimal" else ("<=", 1.0)
        goal(
            f"{r['instances']} creates at once / sequential bare, {r['template']}",
            r["ratio"],
            op,
            target,
        )
    goal(
        f"accept: POST create / GET /health throughput, "
        f"{results['accept']['concurrency']} in flight",
        results["accept"]["ratio"],
        ">=",
        0.5,
    )
    goal(
        f"a page of 25 over {results['paging']['rows']:,} rows / bare SELECT … OFFSET … LIMIT",
        results["paging"]["ratio"],
        "<=",
        2.0,
    )
    goal(
        "sustained: highest rate kept up with / bare sequential clone rate, both for "
        f"{results['sustained']['bareSustained']['seconds']:g} s",
        results["sustained"]["ratio"],
        ">=",
        0.8,
    )
    return rows


def _ms(s: dict[str, Any]) -> str:
    return f"{s['p50_ms']:>9.1f} {s['p99_ms']:>9.1f}"


def report(results: dict[str, Any]) -> None:
    m = results["machine"]
    print()
    print(
        f"load average (1, 5, 15 min): start {m['loadStart']}, end {m['loadEnd']} "
        f"on {m['cpus']} CPUs"
    )
    sw = results["sweep"]
    print()
    print(
        "Clone concurrency sweep: bare clones a second at each concurrency "
        "(what the server sustains)"
    )
    for key, label in (("Minimal", "small"), ("Large", "large")):
        rates = "  ".join(f"{c}: {v}" for c, v in sw[key]["perSecond"].items())
        print(f"  {label:<6} ({sw[key]['clones']} clones)  {rates}")
    print(
        f"  best for both: {sw['best']} "
        f"(the stacks below run with EDFI_IM_CLONE_CONCURRENCY={sw['best']})"
    )
    print()
    print(
        "Clone overhead: POST -> Completed seen on the job's event stream "
        "(GET /v2/jobs/{id}/events), vs a bare CREATE DATABASE ... TEMPLATE"
    )
    head = (
        f"{'template':<10} {'MB':>6} {'runs':>5} {'sys p50':>9} {'sys p99':>9} "
        f"{'bare p50':>9} {'bare p99':>9} {'ratio':>6} {'over ms':>8} "
        f"{'floor p50':>9} {'floor ratio':>11} {'floor over':>10} "
        f"{'lean p50':>9} {'lean ratio':>10} {'lean over':>9} "
        f"{'stack p50':>9} {'stack ratio':>11} {'stack over':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in results["cloneOverhead"]:
        f = r.get("floor")
        print(
            f"{r['template']:<10} {r['sizeMB']:>6} {r['system']['runs']:>5} {_ms(r['system'])} "
            f"{_ms(r['bare'])} {r['ratio']:>6} {r['overheadMs']:>8} "
            + (
                f"{f['p50_ms']:>9.1f} {r['floorRatio']:>11} {r['floorOverheadMs']:>10} "
                if f
                else ""
            )
            + (
                f"{r['lean']['p50_ms']:>9.1f} {r['leanRatio']:>10} {r['leanOverheadMs']:>9} "
                if "lean" in r
                else ""
            )
            + (
                f"{r['leanStack']['p50_ms']:>9.1f} {r['leanStackRatio']:>11} "
                f"{r['leanStackOverheadMs']:>10}"
                if "leanStack" in r
                else ""
            )
        )
    print(
        "  over ms: the median of each run's create minus the bare clone beside it; floor: "
        "the design's hops made by the plainest code (bench/floor.py), the least a create "
        "can cost here; lean: every round trip the services make on a create's path, made by "
        "the same plain code (what the guarantees' statements cost without the services' code); "
        "stack: the same statements in three plain processes, a client following the job's "
        "event stream (bench/lean_stack.py: what the design's process topology adds)"
    )
    if "floorHopsMs" in results:
        print(
            "  the floor's hops alone, p50 ms: "
            + ", ".join(f"{k} {v}" for k, v in results["floorHopsMs"].items())
        )
    print()
    print("Bulk: N creates at once until all ended, vs N sequential bare clones (times in ms)")
    head = (
        f"{'template':<9} {'N':>4} {'shards':>6} {'clones':>6} {'runs':>4} {'sys p50':>9} "
        f"{'sys p99':>9} {'bare p50':>9} {'bare p99':>9} {'ratio':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in results["bulk"]:
        print(
            f"{r['template']:<9} {r['instances']:>4} {r['shards']:>6} {r['cloneConcurrency']:>6} "
            f"{r['system']['runs']:>4} {_ms(r['system'])} {_ms(r['bare'])} {r['ratio']:>6}"
        )
    for r in results["bulk"]:
        print(
            f"  CPU ms per create ({r['template']}, {r['shards']} shards): "
            + ", ".join(f"{k} {v}" for k, v in sorted(r["cpuMsPerCreate"].items()))
        )
    print()
    a = results["accept"]
    print(
        f"Accept path: load generator process, {a['concurrency']} in flight, "
        f"{a['create']['seconds']} s, bearer token, provisioner stopped; vs GET /health"
    )
    head = (
        f"{'request':<22} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'gw CPU ms/req':>14}"
    )
    print(head)
    print("-" * len(head))
    for label, r in (("POST /v2/dbInstances", a["create"]), ("GET /health", a["health"])):
        print(
            f"{label:<22} {r['requests']:>8} {r['perSecond']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8} "
            f"{r['gatewayCpuMsPerRequest']:>14}"
        )
    print(f"throughput ratio {a['ratio']}; p50 latency ratio {a['latencyRatio']}")
    g = results["paging"]
    print()
    print(
        f"GET /v2/dbInstances over {g['rows']} rows, limit 25 at spread offsets "
        f"({g['page']['runs']} pages), vs the same SELECT run directly"
    )
    print(f"{'API':<22} {_ms(g['page'])}")
    print(f"{'bare SELECT':<22} {_ms(g['bareSelect'])}   ratio {g['ratio']}")
    print(
        f"{'the API statement':<22} {_ms(g['apiStatement'])}   ratio "
        f"{g['ratioToApiStatement']} (the API's own SELECT, run directly)"
    )
    print(f"walking all rows, pages of {g['walkPageSize']}: {g['walkAllRows_s']} s")
    p = results["sustained"]
    print()
    print(
        f"Sustained pipeline: creates offered at a fixed rate (open loop); sequential bare "
        f"clones kept up for {p['bareSustained']['seconds']:g} s: {p['bareClonesPerSecond']}/s "
        f"(clones done at each 100: {p['bareSustained']['marks']}); the bulk's 200 bare "
        f"clones: {p['burstClonesPerSecond']}/s, ratio to it {p['ratioToBurst']}"
    )
    head = (
        f"  {'offered/s':>9} {'sent/s':>7} {'accepted':>8} {'ended':>6} {'errors':>6} "
        f"{'max backlog':>11} {'drain s':>7} {'jobs/s':>7} {'e2e p50':>8} {'kept up':>7}"
    )
    print(head)
    for t in p["trials"]:
        st = t["stages"]
        print(
            f"  {t['offeredPerSecond']:>9} {t['sentPerSecond']:>7} {t['accepted']:>8} "
            f"{t['ended']:>6} {t['errors']:>6} {t['maxBacklogLastThird']:>11} {t['drain_s']:>7} "
            f"{st.get('jobsPerSecond', '-')!s:>7} "
            f"{st['endToEnd']['p50_ms'] if st else '-'!s:>8} {'yes' if t['keptUp'] else 'no':>7}"
        )
    best = max(
        (t for t in p["trials"] if t["keptUp"]), key=lambda t: t["offeredPerSecond"], default=None
    )
    if best and best["stages"]:
        st = best["stages"]
        print(
            f"  stages at {best['offeredPerSecond']}/s "
            "(p50 / p99 ms, each stamp a transaction's start):"
        )
        for label, key in (
            ("accept -> relay", "outboxRelay"),
            ("relay -> claim", "relayToClaim"),
            ("claim -> finished", "claimToFinished"),
            ("end to end", "endToEnd"),
        ):
            print(f"    {label:<20} {_ms(st[key])}")
    print()
    print(
        "Peak memory (VmHWM, MB): "
        + "; ".join(
            f"{label}: " + ", ".join(f"{k} {v}" for k, v in sorted(m.items()))
            for label, m in results["peakMemoryMB"].items()
        )
    )
    print()
    print(goals_table(results["goals"]))


def goals_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| measure | ratio | goal | |", "|---|---|---|---|"]
    for g in rows:
        lines.append(
            f"| {g['measure']} | {g['ratio']} | {g['goal']} | {'met' if g['met'] else 'NOT met'} |"
        )
    return "\n".join(lines)


def markdown(results: dict[str, Any], args: argparse.Namespace) -> str:
    m = results["machine"]
    a = results["accept"]
    sw = results["sweep"]
    lines = [
        f"# `just bench` instances, {results['finishedAt']}",
        "",
        f"Mode: {'quick' if args.quick else 'full'}; {m['cpus']} CPUs; load average (1, 5, 15 "
        f"min) at start {m['loadStart']}, at end {m['loadEnd']}; commit {m['commit']}.",
        "",
        goals_table(results["goals"]),
        "",
        f"Clone concurrency found best (bare sweep, both templates): **{sw['best']}**; "
        f"small {sw['Minimal']['perSecond']}, large {sw['Large']['perSecond']} clones/s.",
        "",
        "| measure | system | baseline | ratio |",
        "|---|---|---|---|",
    ]
    for r in results["cloneOverhead"]:
        lines.append(
            f"| one create, {r['template']} ({r['sizeMB']} MB), p50 | {r['system']['p50_ms']} ms "
            f"(overhead {r['overheadMs']} ms) | bare clone {r['bare']['p50_ms']} ms "
            f"| {r['ratio']} |"
        )
        if "floor" in r:
            lines.append(
                f"| the design's floor, {r['template']}: its hops by the plainest code "
                f"(bench/floor.py), p50 | {r['floor']['p50_ms']} ms (overhead "
                f"{r['floorOverheadMs']} ms) | bare clone {r['bare']['p50_ms']} ms | "
                f"{r['floorRatio']} |"
            )
        if "lean" in r:
            lines.append(
                f"| the services' every statement on the path, {r['template']}, by the same plain "
                f"code (bench/floor.py, lean), p50 | {r['lean']['p50_ms']} ms (overhead "
                f"{r['leanOverheadMs']} ms) | bare clone {r['bare']['p50_ms']} ms | "
                f"{r['leanRatio']} |"
            )
        if "leanStack" in r:
            lines.append(
                f"| the same statements in three plain processes, {r['template']}, followed on "
                f"the job's event stream (bench/lean_stack.py), p50 | {r['leanStack']['p50_ms']} "
                f"ms (overhead {r['leanStackOverheadMs']} ms) | bare clone {r['bare']['p50_ms']} "
                f"ms | {r['leanStackRatio']} |"
            )
    for r in results["bulk"]:
        lines.append(
            f"| {r['instances']} creates at once, {r['template']}, {r['shards']} shards, "
            f"{r['cloneConcurrency']} clone slots | {r['system']['p50_ms'] / 1000:.2f} s "
            f"| {r['instances']} sequential bare clones {r['bare']['p50_ms'] / 1000:.2f} s "
            f"| {r['ratio']} |"
        )
    lines.append(
        f"| accept path, {a['concurrency']} in flight | POST {a['create']['perSecond']} req/s, "
        f"p50 {a['create']['p50_ms']} ms | GET /health {a['health']['perSecond']} req/s, p50 "
        f"{a['health']['p50_ms']} ms | {a['ratio']} (throughput) |"
    )
    g = results["paging"]
    lines.append(
        f"| a page of 25 over {g['rows']:,} rows, p50 | {g['page']['p50_ms']} ms | bare "
        f"`SELECT * … ORDER BY id OFFSET … LIMIT 25` {g['bareSelect']['p50_ms']} ms | "
        f"{g['ratio']} |"
    )
    lines.append(
        f"| the same page | {g['page']['p50_ms']} ms | the API's own SELECT run directly "
        f"{g['apiStatement']['p50_ms']} ms | {g['ratioToApiStatement']} |"
    )
    p = results["sustained"]
    lines.append(
        f"| sustained pipeline, highest rate kept up with | {p['keptUpPerSecond']}/s "
        f"| bare sequential for {p['bareSustained']['seconds']:g} s "
        f"{p['bareClonesPerSecond']}/s | {p['ratio']} |"
    )
    lines.append(
        f"| the same | {p['keptUpPerSecond']}/s | the bulk's 200 bare sequential clones "
        f"{p['burstClonesPerSecond']}/s | {p['ratioToBurst']} |"
    )
    lines.append("")
    if "floorHopsMs" in results:
        lines.append(
            "The floor's hops alone, p50 ms: "
            + ", ".join(f"{k} {v}" for k, v in results["floorHopsMs"].items())
            + "  "
        )
    for r in results["bulk"]:
        lines.append(
            f"CPU ms per create, {r['instances']} at once ({r['template']}, {r['shards']} "
            "shards): "
            + ", ".join(f"{k} {v}" for k, v in sorted(r["cpuMsPerCreate"].items()))
            + "  "
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter offers (~5 min)")
    parser.add_argument("--runs", type=int, default=None, help="runs of each clone-overhead case")
    parser.add_argument("--large-mb", type=int, default=100)
    parser.add_argument("--bulk", type=int, default=None, help="creates at once, small template")
    parser.add_argument("--bulk-large", type=int, default=None, help="creates at once, large")
    parser.add_argument("--bulk-runs", type=int, default=None)
    parser.add_argument("--sustain-seconds", type=float, default=None)
    parser.add_argument("--sustain-trials", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--accept-seconds", type=float, default=10.0)
    parser.add_argument(
        "--clone-concurrency", type=int, default=None, help="skip the sweep and use this"
    )
    args = parser.parse_args()
    quick = args.quick
    runs = args.runs or (5 if quick else 15)
    bulk_n = args.bulk or (100 if quick else 200)
    bulk_large = args.bulk_large or (20 if quick else 50)
    bulk_runs = args.bulk_runs or (1 if quick else 2)
    sustain_seconds = args.sustain_seconds or (20.0 if quick else 60.0)
    accept_seconds = 5.0 if quick and args.accept_seconds == 10.0 else args.accept_seconds

    tag = uuid.uuid4().hex[:8]
    prefix = f"EdFi_Ods_bench{tag}_"
    large = f"EdFi_Ods_Bench_Large_{tag}"
    commit = subprocess.run(
        ["/usr/bin/git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    results: dict[str, Any] = {
        "peakMemoryMB": {},
        "machine": {
            "cpus": os.cpu_count(),
            "loadStart": [round(v, 2) for v in os.getloadavg()],
            "commit": commit,
        },
        "defaultShards": 8,
    }
    started = time.perf_counter()
    try:
        print(f"generating a ~{args.large_mb} MB template ...", flush=True)
        large_mb = make_large_template(large, args.large_mb)
        templates = {"Minimal": TINY, "Large": large}
        sizes = {
            "Minimal": pg.query("postgres", "SELECT pg_database_size(%s)", (TINY,))[0][0]
            // (1024 * 1024),
            "Large": large_mb,
        }
        print("clone concurrency sweep ...", flush=True)
        levels = [1, 2, 4, 8] if quick else [1, 2, 3, 4, 6, 8]
        small = sweep(TINY, prefix, 24 if quick else 48, levels)
        big = sweep(large, prefix, 8 if quick else 16, levels)
        best = args.clone_concurrency or best_concurrency(small, big)
        results["sweep"] = {"Minimal": small, "Large": big, "best": best}
        default_shards = results["defaultShards"]
        with bench_stack(f"{tag}_d", prefix, default_shards, templates, best) as b:
            print("clone overhead ...", flush=True)
            floor = Running()
            lean_stack = None
            try:
                lean_stack = LeanStack()
                results["cloneOverhead"] = clone_overhead(b, templates, runs, floor, lean_stack)
                results["floorHopsMs"] = floor.hops(20)
            finally:
                floor.close()
                if lean_stack is not None:
                    lean_stack.close()
            for r in results["cloneOverhead"]:
                r["sizeMB"] = sizes[r["template"]]
            print("bulk ...", flush=True)
            results["bulk"] = [bulk(b, bulk_n, bulk_runs)]
            results["bulk"].append(bulk(b, bulk_large, 1, "Large", large))
            burst_rate = round(bulk_n / (results["bulk"][0]["bare"]["p50_ms"] / 1000), 2)
            print("sustained pipeline ...", flush=True)
            results["sustained"] = sustained(b, burst_rate, sustain_seconds, args.sustain_trials)
            print("paging ...", flush=True)
            results["paging"] = paging(b, 10_000, 200)
            print("accept path ...", flush=True)
            results["accept"] = accept(b, args.concurrency, accept_seconds)
        results["peakMemoryMB"][f"{default_shards} shards"] = b.memory
        if not quick:
            with bench_stack(f"{tag}_1", prefix, 1, templates, best) as b1:
                print("bulk, one shard ...", flush=True)
                results["bulk"].append(bulk(b1, bulk_n, bulk_runs))
            results["peakMemoryMB"]["1 shard"] = b1.memory
    except Exception as exc:
        # What was measured is kept (and says it is partial), then the run fails loudly.
        results["error"] = repr(exc)
        results["machine"]["loadEnd"] = [round(v, 2) for v in os.getloadavg()]
        write_results("instances-partial", quick=quick, results=results)
        raise
    finally:
        drop_prefixed(prefix)
        drop_template(large)
    results["machine"]["loadEnd"] = [round(v, 2) for v in os.getloadavg()]
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["finishedAt"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results["goals"] = goals(results)
    report(results)
    out = write_results("instances", pollSeconds=None, quick=quick, results=results)
    table = out.with_suffix(".md")
    table.write_text(markdown(results, args))
    print(f"written: {table.relative_to(ROOT)}  ({results['seconds']} s)")


if __name__ == "__main__":
    main()
