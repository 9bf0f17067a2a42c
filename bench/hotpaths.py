"""CPU of the hot paths, in-process and step by step (issue 18): the accept of a create (as the
gateway runs it, in one transaction) and the status service's applying of its two events
(`Started`, `InstanceCreated`), each step's CPU time (`time.process_time`, this process only:
not PostgreSQL's) averaged over `--runs` after a warm-up. What the profiles of the services
pointed at (building SQLAlchemy statements and their cache keys per call) shows here per step.

    uv run --frozen python -m bench.hotpaths --runs 500
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench.instances import TINY, Bench
from contracts.messages import InstanceCreated, InstanceOperationStarted, Operation
from services.admin_db import accept, inbox, instances, jobs, outbox
from services.admin_db.engine import create_admin_engine
from services.rules.states import Switch
from services.status.events import ConnectionStrings, apply_event
from tests.support import pg

SPENT: dict[str, float] = collections.defaultdict(float)


def timed(module: Any, name: str, label: str) -> None:
    """Count the CPU each call of `module.name` takes under `label` (an older checkout
    without it: skipped, so the same tool measures before and after a change)."""
    original: Callable[..., Awaitable[Any]] | None = getattr(module, name, None)
    if original is None:
        return

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return await original(*args, **kwargs)
        finally:
            SPENT[label] += time.process_time() - started

    setattr(module, name, wrapper)


def instrument() -> None:
    timed(instances, "lock_names", "accept: name locks (with BEGIN; now with the id reserved)")
    timed(
        instances,
        "add_pending_if_free",
        "accept: names checked + instance inserted (now with its job and command)",
    )
    timed(accept, "_free_names", "accept: conflict SELECT (who holds a name)")
    timed(instances, "add_pending", "accept: instance inserted")
    timed(jobs, "start", "accept: job inserted (before: a statement of its own)")
    # `add` since the review of this stop (`enqueue` before it).
    adds = "add" if hasattr(outbox, "add") else "enqueue"
    timed(outbox, adds, "accept: command in the outbox (after: with the job)")
    timed(inbox, "claim", "apply: inbox row (both events)")
    timed(instances, "lock", "apply: instance locked (both events, with BEGIN)")
    timed(jobs, "lock", "apply: job locked (both events)")
    timed(jobs, "mark_running", "apply Started: job Running")
    timed(instances, "mark_started", "apply Started: instance InProgress")
    timed(instances, "add_to_dbo", "apply Created: dbo.odsinstances row")
    timed(instances, "settle", "apply Created: instance Completed")
    timed(jobs, "finish", "apply Created: job Completed")


async def measure(url: str, runs: int) -> dict[str, float]:
    engine = create_admin_engine(url, pool_size=2)
    strings = ConnectionStrings(b"0" * 32, lambda database: f"host=ods;database={database}")

    async def one(i: int) -> None:
        started = time.process_time()
        async with engine.begin() as conn:
            row = await accept.accept_create(
                conn,
                name=f"Hot {uuid.uuid4().hex[:8]} {i}",
                template_key="Minimal",
                template_database=TINY,
                database_name=f"Hot_{uuid.uuid4().hex[:16]}",
                correlation_id="bench",
                tenant=None,
                switch=Switch(),
            )
        SPENT["ACCEPT, whole transaction (checkout, ping, BEGIN … COMMIT)"] += (
            time.process_time() - started
        )
        for event in (
            InstanceOperationStarted(
                job_id=row.currentjobid,
                instance_id=row.id,
                operation=Operation.CREATE,
                attempt=1,
                worker="bench",
            ),
            InstanceCreated(
                job_id=row.currentjobid,
                instance_id=row.id,
                database_name=row.databasename,
                worker="bench",
            ),
        ):
            started = time.process_time()
            async with engine.begin() as conn:
                outcome = await apply_event(conn, event, str(uuid.uuid4()), strings)
            if outcome != "applied":
                raise RuntimeError(f"{type(event).__name__} was {outcome}")
            SPENT[f"APPLY {type(event).__name__}, whole transaction"] += (
                time.process_time() - started
            )

    try:
        for i in range(min(50, runs)):
            await one(i)
        SPENT.clear()
        for i in range(runs):
            await one(i)
    finally:
        await engine.dispose()
    return {label: round(spent * 1000 / runs, 3) for label, spent in SPENT.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=500)
    args = parser.parse_args()
    instrument()
    bench = Bench(f"hot{uuid.uuid4().hex[:6]}", "Hot_", 8, {"Minimal": TINY})
    try:
        bench.start()  # migrates its admin database; its services are not needed
        bench.stack.stop_all()
        spent = asyncio.run(measure(pg.database_url(bench.database), args.runs))
    finally:
        bench.close()
    print(f"CPU ms per call, this process, mean of {args.runs} creates:")
    for label, ms in sorted(spent.items()):
        print(f"  {ms:7.3f}  {label}")


if __name__ == "__main__":
    main()
