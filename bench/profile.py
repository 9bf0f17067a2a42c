"""Where a create's time goes beyond the clone: one stack (as bench/instances.py runs it), every
statement the services send to the admin database and to the ODS server logged by PostgreSQL
with its duration (`log_min_duration_statement = 0`, set on this run's own databases only), the
services sampled by py-spy, and each job's own timestamps. Prints a breakdown; writes JSON to
bench/results/.

    uv run --frozen python -m bench.profile --creates 40 --bulk 200

PostgreSQL's log must be readable (the Debian cluster's file, as root); py-spy needs ptrace.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.common import RESULTS, write_results
from bench.instances import TINY, Bench, cpu_seconds, drop_prefixed, stages, summary
from tests.support import pg

PG_LOG = Path(os.environ.get("EDFI_IM_PG_LOG", "/var/log/postgresql/postgresql-15-main.log"))
LINE = re.compile(
    r"^(?P<ts>\S+ \S+) \S+ \[(?P<pid>\d+)\] (?P<user>[^@\s]*)@(?P<db>\S+) LOG:  "
    r"duration: (?P<ms>[\d.]+) ms  (?P<what>.*)$"
)


def pids_by_service(b: Bench, databases: list[str]) -> dict[int, str]:
    """Backend pid -> the service process whose connection it serves (by client port)."""
    rows = pg.query(
        "postgres",
        "SELECT pid, client_port FROM pg_stat_activity WHERE datname = ANY(%s)",
        (databases,),
    )
    out = subprocess.run(
        ["/usr/bin/ss", "-tnpH"], capture_output=True, text=True, check=False
    ).stdout
    port_owner: dict[int, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 6 or "pid=" not in parts[5]:
            continue
        local = parts[3].rsplit(":", 1)[1]
        owner = int(parts[5].split("pid=")[1].split(",")[0])
        port_owner[int(local)] = owner
    by_proc = {proc.pid: name for name, proc in b.stack.procs.items()}
    found = {}
    for pid, port in rows:
        found[int(pid)] = by_proc.get(port_owner.get(int(port or 0), -1), "bench")
    return found


def normalise(what: str) -> str:
    text = re.sub(r"__asyncpg_stmt_[0-9a-f_]+__", "S", what)
    text = re.sub(r"'[^']*'", "'?'", text)
    text = re.sub(r'"[^"]*"', '"?"', text)
    text = re.sub(r"\$\d+", "$", text)
    text = re.sub(r"\b\d+\b", "N", text)
    return text[:140]


def sessions(databases: list[str]) -> dict[str, int]:
    """Sessions (connections) each database has had so far (pg_stat_database.sessions)."""
    rows = pg.query(
        "postgres",
        "SELECT datname, sessions FROM pg_stat_database WHERE datname = ANY(%s)",
        (databases,),
    )
    return {str(name): int(k) for name, k in rows}


def read_log(offset: int, databases: set[str]) -> list[dict[str, Any]]:
    with PG_LOG.open(errors="replace") as f:
        f.seek(offset)
        lines = f.read().splitlines()
    found = []
    for line in lines:
        m = LINE.match(line)
        if m and m["db"] in databases:
            found.append(
                {"pid": int(m["pid"]), "db": m["db"], "ms": float(m["ms"]), "what": m["what"]}
            )
    return found


def spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - py-spy from our own venv
        [
            *("py-spy", "record", "--pid", str(pid), "--rate", "100", "--format", "raw"),
            *("--output", str(out), "--nonblocking"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _package(frame: str) -> str:
    """The library (or the project's package) of a py-spy frame, `name (path:line)`; py-spy
    shortens library paths to start at the package."""
    path = frame.rpartition(" (")[2].rstrip(")").rsplit(":", 1)[0]
    if "site-packages/" in path:
        path = path.split("site-packages/")[1]
    if "/services/" in path or path.startswith("services/"):
        return "services." + path.split("services/")[-1].split("/")[0]
    if "/contracts/" in path or path.startswith("contracts/"):
        return "contracts"
    head = path.split("/")[0]
    return head.removesuffix(".py") if head else "?"


def hot_frames(raw: Path, top: int = 25) -> dict[str, Any]:
    """From py-spy's collapsed stacks: samples; the share of samples each frame is on
    (inclusive); and the share of samples whose innermost frame is in each library (self)."""
    if not raw.exists():
        return {"samples": 0, "frames": [], "selfByPackage": []}
    total = 0
    inclusive: dict[str, int] = defaultdict(int)
    own: dict[str, int] = defaultdict(int)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[_package(frames[-1])] += n
        seen = set()
        for frame in frames:
            name = re.sub(r" \((.*/)?(site-packages/)?", " (", frame)
            name = re.sub(r":\d+\)$", ")", name)
            if name in seen:
                continue
            seen.add(name)
            inclusive[name] += n
    ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])
    return {
        "samples": total,
        "frames": [
            {"frame": k, "share": round(v / total, 3)}
            for k, v in ranked
            if v / total < 0.99 and "runpy" not in k
        ][:top],
        "selfByPackage": [
            {"package": k, "share": round(v / total, 3)}
            for k, v in sorted(own.items(), key=lambda kv: -kv[1])[:15]
        ],
    }


def bulk_profile(b: Bench, count: int, tag: str) -> dict[str, Any]:
    """`count` creates at once (50 in flight, as bench.instances' bulk), each service sampled
    by py-spy: the wall time, each stage's spread, CPU per create and where each spent it."""
    procs = {name: proc.pid for name, proc in b.stack.procs.items()}
    cpu_before = {name: cpu_seconds(pid) for name, pid in procs.items()}
    raws = {name: Path(tempfile.gettempdir()) / f"profile-{tag}-bulk-{name}.raw" for name in procs}
    spies = [spy(pid, raws[name]) for name, pid in procs.items()]
    started = time.perf_counter()
    load = b.load(
        *("--mode", "create", "--count", str(count), "--concurrency", "50"),
        *("--template", "Minimal", "--prefix", "Profiled bulk"),
    )
    accepted = time.perf_counter() - started
    ids = set(load["ids"])
    b.all_completed(ids)
    wall = time.perf_counter() - started
    for p in spies:
        p.send_signal(signal.SIGINT)
    for p in spies:
        p.wait(timeout=30)
    return {
        "creates": count,
        "wallSeconds": round(wall, 2),
        "allAcceptedSeconds": round(accepted, 2),
        "cpuMsPerCreate": {
            name: round((cpu_seconds(pid) - cpu_before[name]) * 1000 / count, 2)
            for name, pid in procs.items()
        },
        "stages": stages(b, ids),
        "pySpy": {name: hot_frames(raw, 40) for name, raw in raws.items()},
    }


def explain(database: str, statement: str, params: tuple[object, ...] = ()) -> str:
    with psycopg.connect(pg.database_url(database), autocommit=True) as c:
        c.execute("BEGIN")
        rows = c.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params).fetchall()
        c.execute("ROLLBACK")
    return "\n".join(str(r[0]) for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--creates", type=int, default=40, help="sequential creates profiled")
    parser.add_argument("--accept-seconds", type=float, default=8.0)
    parser.add_argument(
        "--bulk", type=int, default=200, help="creates at once, py-spy on each service (0: none)"
    )
    args = parser.parse_args()

    tag = uuid.uuid4().hex[:8]
    prefix = f"EdFi_Ods_prof{tag}_"
    maintenance = f"edfi_im_prof_{tag}"
    pg.create(maintenance)
    b = Bench(f"prof_{tag}", prefix, 8, {"Minimal": TINY})
    databases = [b.database, maintenance]
    for name in databases:
        pg.execute("postgres", f'ALTER DATABASE "{name}" SET log_min_duration_statement = 0')
    RESULTS.mkdir(exist_ok=True)
    server = pg.SERVER.rsplit("/", 1)[0] + "/" + maintenance
    b.stack.env["EDFI_IM_ODS_SERVER_URL"] = server
    results: dict[str, Any] = {}
    spies: dict[str, Path] = {}
    try:
        b.start()
        b.until_completed(b.create("Warm up", "Minimal"))
        time.sleep(1.0)
        if args.bulk:
            results["bulk"] = bulk_profile(b, args.bulk, tag)
            drop_prefixed(prefix)
        owners = pids_by_service(b, databases)
        offset = PG_LOG.stat().st_size
        before = sessions(databases)
        procs = []
        for name, proc in b.stack.procs.items():
            spies[name] = Path(tempfile.gettempdir()) / f"profile-{tag}-{name}.raw"
            procs.append(spy(proc.pid, spies[name]))
        timings = []
        with psycopg.connect(pg.database_url(b.database), autocommit=True) as c:
            for k in range(args.creates):
                started = time.perf_counter()
                instance = b.create(f"Profiled {k}", "Minimal")
                accepted = time.perf_counter()
                while True:
                    row = c.execute(
                        "SELECT status FROM edfi_im.dbinstances WHERE id = %s", (instance,)
                    ).fetchone()
                    if row and row[0] in ("Completed", "Error"):
                        break
                    time.sleep(0.002)
                timings.append((instance, accepted - started, time.perf_counter() - started))
                time.sleep(0.1)
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait(timeout=30)
        owners |= pids_by_service(b, databases)
        statements = read_log(offset, set(databases))
        time.sleep(1.0)  # session counts are reported as the sessions end
        results["connectionsPerCreate"] = {
            ("ods" if db == maintenance else "admin"): round((k - before[db]) / args.creates, 2)
            for db, k in sessions(databases).items()
        }
        ids = [t[0] for t in timings]
        stamps = pg.query(
            b.database,
            "SELECT extract(epoch FROM o.sent_at - j.created_at), "
            "extract(epoch FROM j.claimed_at - o.sent_at), "
            "extract(epoch FROM j.started_at - j.claimed_at), "
            "extract(epoch FROM j.server_done_at - j.started_at), "
            "extract(epoch FROM j.finished_at - j.server_done_at), "
            "extract(epoch FROM j.finished_at - j.created_at) "
            "FROM edfi_im.jobs j JOIN edfi_im.dbinstances i ON i.currentjobid = j.id "
            "JOIN edfi_im.outbox o ON (o.body->>'job_id')::uuid = j.id WHERE i.id = ANY(%s)",
            (ids,),
        )
        names = ["accept→relay", "relay→claim", "claim→Started applied", "→fence", "fence→done"]
        results["jobStamps"] = {
            n: summary([float(r[i]) for r in stamps]) for i, n in enumerate(names)
        } | {"accept→finished": summary([float(r[5]) for r in stamps])}
        results["client"] = {
            "post": summary([t[1] for t in timings]),
            "postToCompleted": summary([t[2] for t in timings]),
        }
        per: dict[str, dict[str, Any]] = defaultdict(
            lambda: {"statements": 0, "ms": 0.0, "kinds": defaultdict(lambda: [0, 0.0])}
        )
        for s in statements:
            # The provisioner opens its ODS server connections per operation (gone by the time
            # the owners are read); the bench's own poller is the rest.
            default = "provisioner" if s["db"] == maintenance else "bench poller"
            who = owners.get(s["pid"], default)
            entry = per[f"{who} @ {'ods' if s['db'] == maintenance else 'admin'}"]
            entry["statements"] += 1
            entry["ms"] += s["ms"]
            kind = entry["kinds"][normalise(s["what"])]
            kind[0] += 1
            kind[1] += s["ms"]
        n = args.creates
        results["statementsPerCreate"] = {
            who: {
                "statements": round(e["statements"] / n, 1),
                "serverMs": round(e["ms"] / n, 2),
                "top": [
                    {"what": k, "perCreate": round(v[0] / n, 2), "ms": round(v[1] / n, 3)}
                    for k, v in sorted(e["kinds"].items(), key=lambda kv: -kv[1][1])[:25]
                ],
            }
            for who, e in sorted(per.items())
        }
        results["pySpy"] = {name: hot_frames(path) for name, path in spies.items()}
        # Accept path: py-spy on the gateway under the load generator, the provisioner stopped.
        b.stack.stop("provisioner")
        raw = Path(tempfile.gettempdir()) / f"profile-{tag}-gateway-accept.raw"
        p = spy(b.stack.procs["gateway"].pid, raw)
        offset = PG_LOG.stat().st_size
        load = b.load(
            "--mode", "create", "--concurrency", "16", "--seconds", str(args.accept_seconds)
        )
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
        accepted_n = load["statuses"].get("202", 0)
        acc = [s for s in read_log(offset, {b.database})]
        kinds: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        for s in acc:
            kinds[normalise(s["what"])][0] += 1
            kinds[normalise(s["what"])][1] += s["ms"]
        results["acceptLoad"] = {
            "load": {k: v for k, v in load.items() if k != "ids"},
            "statementsPerAccept": round(len(acc) / max(1, accepted_n), 2),
            "serverMsPerAccept": round(sum(s["ms"] for s in acc) / max(1, accepted_n), 3),
            "kinds": [
                {
                    "what": k,
                    "perAccept": round(v[0] / accepted_n, 2),
                    "ms": round(v[1] / accepted_n, 3),
                }
                for k, v in sorted(kinds.items(), key=lambda kv: -kv[1][0])[:25]
            ],
            "pySpy": hot_frames(raw, 40),
        }
        # The list page and the accept statements, explained.
        with psycopg.connect(pg.database_url(b.database), autocommit=True) as c:
            c.execute(
                "INSERT INTO edfi_im.dbinstances (name, status, databasetemplate, databasename, "
                "imported, createdat, lastmodifieddate, lastrefreshed) "
                "SELECT 'Page ' || g, 'Completed', 'Minimal', %s || 'Page_' || g, false, now(), "
                "now(), now() FROM generate_series(1, 10000) g",
                (prefix,),
            )
            c.execute("ANALYZE edfi_im.dbinstances")
        results["explain"] = {
            "page": explain(
                b.database, "SELECT * FROM edfi_im.dbinstances ORDER BY id OFFSET 5000 LIMIT 25"
            ),
        }
        t0 = time.perf_counter()
        for _ in range(50):
            httpx.get(
                f"{b.stack.url}/v2/dbInstances",
                params={"offset": 5000, "limit": 25},
                headers={"Authorization": f"Bearer {b.token}"},
            ).raise_for_status()
        results["pageViaApi_ms"] = round((time.perf_counter() - t0) / 50 * 1000, 2)
    finally:
        b.close()
        drop_prefixed(prefix)
        pg.drop(maintenance)
    report(results)
    write_results("profile", results=results)


def report(r: dict[str, Any]) -> None:
    if "bulk" in r:
        k = r["bulk"]
        print(
            f"\nbulk: {k['creates']} creates at once in {k['wallSeconds']} s (all accepted after "
            f"{k['allAcceptedSeconds']} s); CPU ms per create {k['cpuMsPerCreate']}"
        )
        print("stages:", k["stages"])
        for name, spyres in k["pySpy"].items():
            print(f"\n{name} (bulk), py-spy ({spyres['samples']} samples, idle included):")
            for f in spyres["selfByPackage"][:8]:
                print(f"   self {f['share']:>6.1%}  {f['package']}")
            for f in spyres["frames"][:30]:
                print(f"   {f['share']:>6.1%}  {f['frame']}")
    print("\nclient:", r["client"])
    print("connections opened per create:", r["connectionsPerCreate"])
    print("job stamps (each step's transaction start, now()):")
    for k, v in r["jobStamps"].items():
        print(f"  {k:<24} p50 {v['p50_ms']:>7} ms  p99 {v['p99_ms']:>7} ms")
    for who, e in r["statementsPerCreate"].items():
        print(f"\n{who}: {e['statements']} statements, {e['serverMs']} ms in the server per create")
        for k in e["top"][:12]:
            print(f"   {k['perCreate']:>5} x {k['ms']:>7.3f} ms  {k['what']}")
    a = r["acceptLoad"]
    print(
        f"\naccept load: {a['load']['perSecond']}/s p50 {a['load']['p50_ms']} ms; "
        f"{a['statementsPerAccept']} statements, {a['serverMsPerAccept']} ms server per accept"
    )
    for k in a["kinds"][:20]:
        print(f"   {k['perAccept']:>5} x {k['ms']:>7.3f} ms  {k['what']}")
    print("\ngateway under accept load, py-spy: self time by library")
    for f in a["pySpy"]["selfByPackage"]:
        print(f"   {f['share']:>6.1%}  {f['package']}")
    print("inclusive:")
    for f in a["pySpy"]["frames"]:
        print(f"   {f['share']:>6.1%}  {f['frame']}")
    for name, spyres in r["pySpy"].items():
        print(f"\n{name} (sequential creates), py-spy inclusive shares ({spyres['samples']}):")
        for f in spyres["selfByPackage"][:8]:
            print(f"   self {f['share']:>6.1%}  {f['package']}")
        for f in spyres["frames"][:15]:
            print(f"   {f['share']:>6.1%}  {f['frame']}")
    print("\nlist page:", r["pageViaApi_ms"], "ms via the API\n", r["explain"]["page"])


if __name__ == "__main__":
    main()
