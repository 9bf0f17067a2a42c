"""Where an instance's time goes, each figure beside what an operator would do by hand, in one
run on one machine (`just bench`). Prints a table; writes JSON to bench/results/.

The services run as real processes (as `just up` runs them) against a fresh admin database and
RabbitMQ vhost; every database the bench creates is dropped at the end.

1. Clone overhead: POST -> `Completed` seen by polling the API, against a bare
   `CREATE DATABASE ... TEMPLATE ...` of the same template, for the tiny development template
   and for a ~100 MB template the bench generates.
2. Bulk: N creates requested at once until all are `Completed`, against N sequential bare clones
   (a shell loop), with the default shard count and with one shard.
3. Accept path: `POST /v2/dbInstances` from a separate load-generator process (bench/load.py) at
   a fixed concurrency, with a token, against `GET /health` at the same concurrency (the HTTP
   floor); and `GET /v2/dbInstances` paging over 10,000 rows against the same SELECT run directly.
4. Pipeline: creates offered at a fixed rate for 30 s; jobs per second accepted -> terminal and
   the time split by stage (outbox relay, queue wait, provisioning, status apply), against the
   rate of sequential bare clones.
Peak memory (VmHWM) of each service process is reported for each stack.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from bench.common import percentile, write_results
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


def bare_clone(template: str, target: str) -> float:
    """What an operator types: CREATE DATABASE ... TEMPLATE ..., timed."""
    with psycopg.connect(pg.SERVER, autocommit=True) as c:
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

    def __init__(self, tag: str, prefix: str, shard_count: int, templates: dict[str, str]) -> None:
        self.tag = tag
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
            "EDFI_IM_TEMPLATES": json.dumps(templates),
            "EDFI_IM_REGISTRATION_ENABLED": "true",
            "EDFI_IM_TOKEN_LIFETIME_SECONDS": "7200",
            "EDFI_IM_STANDBY_DELAY_SECONDS": "1",
            "EDFI_IM_LOG_FORMAT": "json",
            "EDFI_IM_LOG_LEVEL": "WARNING",
        }
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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = pg.query(
                self.database,
                "SELECT count(*) FROM edfi_im.dbinstances WHERE id = ANY(%s) "
                "AND status IN ('Completed', 'Error')",
                (list(ids),),
            )[0][0]
            if done == len(ids):
                return
            time.sleep(0.05)
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
    for name in pg.databases_like(prefix.replace("_", r"\_") + "%"):
        pg.drop(name)


def clone_overhead(b: Bench, templates: dict[str, str], runs: int) -> list[dict[str, Any]]:
    rows = []
    for key, template in templates.items():
        system, bare = [], []
        for i in range(runs):
            # Alternate which goes first, so neither always gets the warmer cache.
            for which in ("system", "bare") if i % 2 == 0 else ("bare", "system"):
                if which == "system":
                    started = time.perf_counter()
                    b.until_completed(b.create(f"Overhead {key} {i}", key))
                    system.append(time.perf_counter() - started)
                else:
                    bare.append(bare_clone(template, f"{b.prefix}bare_{key}_{i}"))
            drop_prefixed(b.prefix)
        s, base = summary(system), summary(bare)
        rows.append(
            {
                "template": key,
                "database": template,
                "system": s,
                "bare": base,
                "ratio": ratio(s, base),
            }
        )
    return rows


def bulk(b: Bench, count: int, runs: int) -> dict[str, Any]:
    system, bare = [], []
    for run in range(runs):
        started = time.perf_counter()
        result = b.load(
            "--mode",
            "create",
            "--count",
            str(count),
            "--concurrency",
            "50",
            "--prefix",
            f"Bulk {run}",
        )
        ids = set(result["ids"])
        if len(ids) != count:
            raise RuntimeError(f"only {len(ids)} of {count} creates accepted: {result}")
        b.all_completed(ids)
        system.append(time.perf_counter() - started)
        drop_prefixed(b.prefix)
        started = time.perf_counter()
        for k in range(count):
            bare_clone(TINY, f"{b.prefix}seq_{run}_{k}")
        bare.append(time.perf_counter() - started)
        drop_prefixed(b.prefix)
    s, base = summary(system), summary(bare)
    return {
        "instances": count,
        "shards": b.stack.shard_count,
        "system": s,
        "bare": base,
        "ratio": ratio(s, base),
    }


def pipeline(b: Bench, rate: float, seconds: float) -> dict[str, Any]:
    apply_sum = b.status_metric("edfi_im_event_apply_delay_seconds_sum")
    apply_count = b.status_metric("edfi_im_event_apply_delay_seconds_count")
    result = b.load(
        "--mode", "create", "--rate", str(rate), "--seconds", str(seconds), "--prefix", "Pipeline"
    )
    ids = set(result["ids"])
    b.all_completed(ids)
    rows = pg.query(
        b.database,
        "SELECT j.created_at, o.sent_at, j.started_at, j.finished_at, j.status "
        "FROM edfi_im.jobs j JOIN edfi_im.dbinstances i ON i.currentjobid = j.id "
        "JOIN edfi_im.outbox o ON (o.body->>'job_id')::uuid = j.id "
        "WHERE i.id = ANY(%s)",
        (list(ids),),
    )
    drop_prefixed(b.prefix)
    completed = [r for r in rows if r[4] == "Completed"]
    first = min(r[0] for r in completed)
    last = max(r[3] for r in completed)
    span = (last - first).total_seconds()

    def stage(f: Callable[[tuple[Any, ...]], float]) -> dict[str, Any]:
        return summary([f(r) for r in completed])

    applied = b.status_metric("edfi_im_event_apply_delay_seconds_count") - apply_count
    apply_mean = (
        (b.status_metric("edfi_im_event_apply_delay_seconds_sum") - apply_sum) / applied
        if applied
        else 0.0
    )
    return {
        "offeredPerSecond": rate,
        "seconds": seconds,
        "accepted": len(ids),
        "completed": len(completed),
        "jobsPerSecond": round(len(completed) / span, 2) if span else None,
        "endToEnd": stage(lambda r: (r[3] - r[0]).total_seconds()),
        "stages": {
            "outboxRelay": stage(lambda r: (r[1] - r[0]).total_seconds()),
            "queueWait": stage(lambda r: (r[2] - r[1]).total_seconds()),
            "provisioning": stage(lambda r: (r[3] - r[2]).total_seconds()),
            "statusApplyMean_ms": round(apply_mean * 1000, 1),
        },
        "acceptP50_ms": result["p50_ms"],
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
    api, direct = [], []
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
        started = time.perf_counter()
        offset = 0
        while True:
            page = b.api.get("/v2/dbInstances", params={"offset": offset, "limit": 500}).json()
            if not page:
                break
            offset += len(page)
        walk = time.perf_counter() - started
    s, base = summary(api), summary(direct)
    return {
        "rows": rows,
        "page": s,
        "bareSelect": base,
        "ratio": ratio(s, base),
        "walkAllRows_s": round(walk, 2),
        "walkPageSize": 500,
    }


def accept(b: Bench, concurrency: int, seconds: float) -> dict[str, Any]:
    # The provisioner is stopped: the accepted commands wait in their queues (dropped with the
    # vhost), so clones do not share the machine with the gateway.
    b.memory.update(peak_memory_mb(b.stack))  # the provisioner's, before it stops
    b.stack.stop("provisioner")
    health = b.load(
        "--mode", "health", "--concurrency", str(concurrency), "--seconds", str(seconds)
    )
    create = b.load(
        "--mode",
        "create",
        "--concurrency",
        str(concurrency),
        "--seconds",
        str(seconds),
        "--prefix",
        "Accept",
    )
    return {
        "concurrency": concurrency,
        "create": {k: v for k, v in create.items() if k != "ids"},
        "health": {k: v for k, v in health.items() if k != "ids"},
        "ratio": round(create["p50_ms"] / health["p50_ms"], 2) if health["p50_ms"] else None,
    }


@contextmanager
def bench_stack(tag: str, prefix: str, shards: int, templates: dict[str, str]) -> Iterator[Bench]:
    b = Bench(tag, prefix, shards, templates)
    try:
        b.start()
        yield b
    finally:
        b.close()


def _ms(s: dict[str, Any]) -> str:
    return f"{s['p50_ms']:>9.1f} {s['p99_ms']:>9.1f}"


def report(results: dict[str, Any]) -> None:
    print()
    print(
        f"Clone overhead: POST -> Completed seen by polling every {POLL_SECONDS * 1000:g} ms, "
        "vs a bare CREATE DATABASE ... TEMPLATE"
    )
    head = (
        f"{'template':<10} {'MB':>6} {'runs':>5} {'sys p50':>9} {'sys p99':>9} "
        f"{'bare p50':>9} {'bare p99':>9} {'ratio':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in results["cloneOverhead"]:
        print(
            f"{r['template']:<10} {r['sizeMB']:>6} {r['system']['runs']:>5} {_ms(r['system'])} "
            f"{_ms(r['bare'])} {r['ratio']:>6}"
        )
    print()
    n = results["bulk"][0]["instances"]
    print(
        f"Bulk: {n} creates at once until all Completed, vs {n} sequential bare clones "
        "(times in ms)"
    )
    head = (
        f"{'shards':>6} {'runs':>5} {'sys p50':>9} {'sys p99':>9} {'bare p50':>9} "
        f"{'bare p99':>9} {'ratio':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in results["bulk"]:
        print(
            f"{r['shards']:>6} {r['system']['runs']:>5} {_ms(r['system'])} {_ms(r['bare'])} "
            f"{r['ratio']:>6}"
        )
    print()
    a = results["accept"]
    print(
        f"Accept path: load generator process, {a['concurrency']} in flight, "
        f"{a['create']['seconds']} s, bearer token; vs GET /health"
    )
    head = f"{'request':<22} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
    print(head)
    print("-" * len(head))
    for label, r in (("POST /v2/dbInstances", a["create"]), ("GET /health", a["health"])):
        print(
            f"{label:<22} {r['requests']:>8} {r['perSecond']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8}"
        )
    print(f"{'ratio (p50)':<22} {a['ratio']:>44}")
    g = results["paging"]
    print()
    print(
        f"GET /v2/dbInstances over {g['rows']} rows, limit 25 at spread offsets "
        f"({g['page']['runs']} pages), vs the same SELECT run directly"
    )
    print(f"{'API':<22} {_ms(g['page'])}")
    print(f"{'bare SELECT':<22} {_ms(g['bareSelect'])}   ratio {g['ratio']}")
    print(f"walking all rows, pages of {g['walkPageSize']}: {g['walkAllRows_s']} s")
    p = results["pipeline"]
    print()
    print(
        f"Pipeline: creates offered at {p['offeredPerSecond']}/s for {p['seconds']} s "
        f"({p['accepted']} accepted, {p['completed']} completed)"
    )
    print(
        f"  jobs/s accepted -> Completed: {p['jobsPerSecond']}  (sequential bare clones: "
        f"{results['bareClonesPerSecond']}/s)"
    )
    head = f"  {'stage':<20} {'p50 ms':>9} {'p99 ms':>9}"
    print(head)
    for label, key in (
        ("outbox relay", "outboxRelay"),
        ("queue wait", "queueWait"),
        ("provisioning", "provisioning"),
    ):
        print(f"  {label:<20} {_ms(p['stages'][key])}")
    print(f"  {'status apply (mean)':<20} {p['stages']['statusApplyMean_ms']:>9}")
    print(f"  {'end to end':<20} {_ms(p['endToEnd'])}")
    print()
    print(
        "Peak memory (VmHWM, MB): "
        + "; ".join(
            f"{label}: " + ", ".join(f"{k} {v}" for k, v in sorted(m.items()))
            for label, m in results["peakMemoryMB"].items()
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs of each clone-overhead case")
    parser.add_argument("--large-mb", type=int, default=100)
    parser.add_argument("--bulk", type=int, default=200)
    parser.add_argument("--bulk-runs", type=int, default=2)
    parser.add_argument("--rate", type=float, default=8.0, help="pipeline: creates offered /s")
    parser.add_argument("--pipeline-seconds", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--accept-seconds", type=float, default=10.0)
    args = parser.parse_args()

    tag = uuid.uuid4().hex[:8]
    prefix = f"EdFi_Ods_bench{tag}_"
    large = f"EdFi_Ods_Bench_Large_{tag}"
    results: dict[str, Any] = {"peakMemoryMB": {}}
    try:
        print(f"generating a ~{args.large_mb} MB template ...", flush=True)
        large_mb = make_large_template(large, args.large_mb)
        templates = {"Minimal": TINY, "Large": large}
        sizes = {
            "Minimal": pg.query("postgres", "SELECT pg_database_size(%s)", (TINY,))[0][0]
            // (1024 * 1024),
            "Large": large_mb,
        }
        default_shards = 8
        with bench_stack(f"{tag}_d", prefix, default_shards, templates) as b:
            print("clone overhead ...", flush=True)
            results["cloneOverhead"] = clone_overhead(b, templates, args.runs)
            for r in results["cloneOverhead"]:
                r["sizeMB"] = sizes[r["template"]]
            print("bulk ...", flush=True)
            results["bulk"] = [bulk(b, args.bulk, args.bulk_runs)]
            print("pipeline ...", flush=True)
            results["pipeline"] = pipeline(b, args.rate, args.pipeline_seconds)
            print("paging ...", flush=True)
            results["paging"] = paging(b, 10_000, 200)
            print("accept path ...", flush=True)
            results["accept"] = accept(b, args.concurrency, args.accept_seconds)
        results["peakMemoryMB"][f"{default_shards} shards"] = b.memory
        with bench_stack(f"{tag}_1", prefix, 1, templates) as b1:
            print("bulk, one shard ...", flush=True)
            results["bulk"].append(bulk(b1, args.bulk, args.bulk_runs))
        results["peakMemoryMB"]["1 shard"] = b1.memory
    finally:
        drop_prefixed(prefix)
        drop_template(large)
    bare_runs = [r["bare"]["p50_ms"] for r in results["bulk"]]
    results["bareClonesPerSecond"] = round(args.bulk / (statistics.median(bare_runs) / 1000), 2)
    report(results)
    write_results("instances", pollSeconds=POLL_SECONDS, results=results)


if __name__ == "__main__":
    main()
