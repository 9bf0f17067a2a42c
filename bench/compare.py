"""Two versions of the system side by side, on the same machine at the same time: this checkout
and an earlier commit (a git worktree of it, with its own environment), measured in rounds that
alternate which goes first (ABBA), so that a machine that drifts (checkpoints, another tenant,
the disk's cache) weighs on both alike. Each round starts a stack of that version:

- `one`: `--pairs` creates one at a time, each followed on its job's stream (POST ->
  `Completed`), alternated with a bare `CREATE DATABASE … TEMPLATE`; the round's overhead is the
  median of (create - bare clone) over its pairs.
- `bulk`: `--bulk` creates at once (8 shards, 2 clone slots): the wall time, and the CPU each
  service and the whole machine (/proc/stat) spent per create.
- `accept` (`--accept S`, off by default): S seconds of `POST /v2/dbInstances` and of
  `GET /health`, 16 in flight, the provisioner stopped, as `just bench` measures the accept
  path: both throughputs, their ratio, the gateway's CPU per POST. `--pairs 0` or `--bulk 0`
  leave the others out.

Prints each round's figures and, per measure, each version's median over the rounds and the
median of the paired differences (this checkout - base). Differences smaller than the rounds'
spread are noise.

    uv run --frozen python -m bench.compare --base b42109a --rounds 8

The base must have bench/instances.py's `Bench`, `cpu_seconds`, `drop_prefixed` and (for
`accept`) `accept` (issue 18's rounds have them). The bare clones are this file's own, on one
kept session, for both versions alike (the base's `bare_clone` may open a session per clone).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _measure_one(pairs: int) -> dict[str, Any]:
    import psycopg
    from psycopg import sql

    from bench.instances import TINY, Bench, drop_prefixed
    from tests.support import pg

    tag = uuid.uuid4().hex[:8]
    prefix = f"EdFi_Ods_cmp{tag}_"
    b = Bench(f"cmp_{tag}", prefix, 8, {"Minimal": TINY})
    system: list[float] = []
    bare: list[float] = []
    session = psycopg.connect(pg.SERVER, autocommit=True)  # kept, as the provisioner's is

    def bare_clone(template: str, target: str) -> float:
        started = time.perf_counter()
        session.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(target), sql.Identifier(template)
            )
        )
        return time.perf_counter() - started

    try:
        b.start()
        for k in range(3):
            b.create_and_follow(f"Warm {k}", "Minimal")
        for i in range(pairs):
            for which in ("system", "bare") if i % 2 == 0 else ("bare", "system"):
                if which == "system":
                    started = time.perf_counter()
                    if b.create_and_follow(f"Compared {i}", "Minimal") != "Completed":
                        raise RuntimeError("a create did not complete")
                    system.append(time.perf_counter() - started)
                else:
                    bare.append(bare_clone(TINY, f"{prefix}bare_{i}"))
            if i % 5 == 4:
                drop_prefixed(prefix)
    finally:
        session.close()
        b.close()
        drop_prefixed(prefix)
    return {
        "createMs": round(statistics.median(system) * 1000, 1),
        "bareMs": round(statistics.median(bare) * 1000, 1),
        "overheadMs": round(
            statistics.median(s - x for s, x in zip(system, bare, strict=True)) * 1000, 1
        ),
    }


def _machine_busy_seconds() -> float:
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _measure_bulk(count: int) -> dict[str, Any]:
    from bench.instances import TINY, Bench, cpu_seconds, drop_prefixed

    tag = uuid.uuid4().hex[:8]
    prefix = f"EdFi_Ods_cmpb{tag}_"
    b = Bench(f"cmpb_{tag}", prefix, 8, {"Minimal": TINY}, clone_concurrency=2)
    try:
        b.start()
        for k in range(3):
            b.create_and_follow(f"Warm {k}", "Minimal")
        pids = {name: proc.pid for name, proc in b.stack.procs.items()}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        busy = _machine_busy_seconds()
        started = time.perf_counter()
        load = b.load(
            *("--mode", "create", "--count", str(count), "--concurrency", "50"),
            *("--template", "Minimal", "--prefix", "Compared bulk"),
        )
        b.all_completed(set(load["ids"]))
        wall = time.perf_counter() - started
        out: dict[str, Any] = {
            f"cpuMs.{name}": round((cpu_seconds(pid) - before[name]) * 1000 / count, 2)
            for name, pid in pids.items()
        }
        out["cpuMs.machine"] = round((_machine_busy_seconds() - busy) * 1000 / count, 1)
        out["wallSeconds"] = round(wall, 2)
        return out
    finally:
        b.close()
        drop_prefixed(prefix)


def _measure_accept(seconds: int) -> dict[str, Any]:
    from bench.instances import TINY, Bench, accept, drop_prefixed

    tag = uuid.uuid4().hex[:8]
    prefix = f"EdFi_Ods_cmpa{tag}_"
    b = Bench(f"cmpa_{tag}", prefix, 8, {"Minimal": TINY})
    try:
        b.start()
        b.create_and_follow("Warm", "Minimal")
        found = accept(b, 16, seconds)
    finally:
        b.close()
        drop_prefixed(prefix)
    return {
        "postPerSecond": found["create"]["perSecond"],
        "healthPerSecond": found["health"]["perSecond"],
        "ratio": found["ratio"],
        "gatewayCpuMsPerPost": found["create"]["gatewayCpuMsPerRequest"],
    }


def _run(checkout: Path, what: str, size: int) -> dict[str, Any]:
    """One measurement by `checkout`'s own code (its environment: `uv run` there)."""
    # This file loaded on its own (not as part of `bench`): what it imports is the checkout's.
    code = (
        "import importlib.util, json; "
        f"spec = importlib.util.spec_from_file_location('edfi_im_compare', {__file__!r}); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        f"print(json.dumps(m._measure_{what}({size})))"
    )
    out = subprocess.run(  # noqa: S603 - uv and our own code
        [shutil.which("uv") or "uv", "run", "--frozen", "python", "-c", code],
        cwd=checkout,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _call(command: list[str], cwd: Path, *, check: bool = True) -> None:
    subprocess.run(command, cwd=cwd, check=check)  # noqa: S603 - git and uv, our own arguments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", required=True, help="the commit to compare this checkout with")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=40, help="creates (and bare clones) a round")
    parser.add_argument("--bulk", type=int, default=200, help="creates at once a round (0: none)")
    parser.add_argument(
        "--accept",
        type=int,
        default=0,
        help="seconds of the accept path a round (POST creates and GET /health, 16 in flight)",
    )
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="edfi-im-compare-"))
    _call(["/usr/bin/git", "worktree", "add", "-q", "--detach", str(base), args.base], ROOT)
    try:
        versions = {"base": base, "this": ROOT}
        # Both environments with their libraries' bytecode compiled: with
        # PYTHONDONTWRITEBYTECODE set, a fresh environment would compile every module it
        # imports in every process, and the base would pay for it (an A/A comparison of one
        # commit with itself showed 0.4 s on a bulk of 200 and 0.65 ms of gateway CPU a create).
        for checkout in versions.values():
            _call(
                [shutil.which("uv") or "uv", "sync", "--frozen", "-q", "--compile-bytecode"],
                checkout,
            )
        measures = (
            ([("one", args.pairs)] if args.pairs else [])
            + ([("bulk", args.bulk)] if args.bulk else [])
            + ([("accept", args.accept)] if args.accept else [])
        )
        found: dict[str, dict[str, list[dict[str, Any]]]] = {
            what: {"base": [], "this": []} for what, _ in measures
        }
        for what, size in measures:
            for r in range(args.rounds):
                order = ["base", "this"] if r % 2 == 0 else ["this", "base"]
                for version in order:
                    figures = _run(versions[version], what, size)
                    found[what][version].append(figures)
                    print(f"{what} round {r + 1} {version}: {json.dumps(figures)}", flush=True)
        summary: dict[str, Any] = {"base": args.base, "rounds": args.rounds}
        for what, by_version in found.items():
            for key in by_version["base"][0]:
                b = [f[key] for f in by_version["base"]]
                t = [f[key] for f in by_version["this"]]
                summary[f"{what}.{key}"] = {
                    "base": round(statistics.median(b), 2),
                    "this": round(statistics.median(t), 2),
                    "pairedDifference": round(
                        statistics.median(y - x for x, y in zip(b, t, strict=True)), 2
                    ),
                    "baseSpread": [min(b), max(b)],
                    "thisSpread": [min(t), max(t)],
                }
        print(f"\nmedians over {args.rounds} rounds (this checkout vs {args.base}):")
        print("| measure | base [min .. max] | this [min .. max] | paired difference |")
        print("|---|---|---|---|")
        for key, v in summary.items():
            if isinstance(v, dict):
                print(
                    f"| {key} | {v['base']} [{v['baseSpread'][0]} .. {v['baseSpread'][1]}] | "
                    f"{v['this']} [{v['thisSpread'][0]} .. {v['thisSpread'][1]}] | "
                    f"{v['pairedDifference']:+} |"
                )
    finally:
        _call(["/usr/bin/git", "worktree", "remove", "--force", str(base)], ROOT, check=False)


if __name__ == "__main__":
    main()
