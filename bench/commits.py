"""What the change feed's commit-order lock costs (issue 18): commits a second of small
transactions that each change a job (so the change-feed trigger of migration 0012 fires), 16
connections at once, on a scratch admin database of the run's own, three ways:

* as migrated: the number drawn under an exclusive advisory lock held through the commit, and
  a NOTIFY (PostgreSQL serialises the commits of notifying transactions as well);
* the lock taken shared (drawers no longer wait for each other; NOT the feed's guarantee as it
  stands: measurement only, on the scratch database);
* shared and without the NOTIFY (measurement only).

    uv run --frozen python -m bench.commits --seconds 6
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import asyncpg

from tests.support import pg

EXCLUSIVE = "PERFORM pg_advisory_xact_lock(63651824809);"
SHARED = "PERFORM pg_advisory_xact_lock_shared(63651824809);"
NOTIFY = "PERFORM pg_notify('edfi_im_changes', '');"


async def commits_per_second(url: str, label: str, seconds: float, workers: int) -> float:
    conns = [await asyncpg.connect(url) for _ in range(workers)]
    jobs = []
    for k in range(workers):
        instance = await conns[0].fetchval(
            "INSERT INTO edfi_im.dbinstances (name, status, databasetemplate, lastrefreshed, "
            "lastmodifieddate) VALUES ($1, 'Pending', 'Minimal', now(), now()) RETURNING id",
            f"commits {label} {k}",
        )
        job = uuid.uuid4()
        await conns[0].execute(
            "INSERT INTO edfi_im.jobs (id, type, instance_id, status, attempts, created_at) "
            "VALUES ($1, 'create', $2, 'Pending', 0, now())",
            job,
            instance,
        )
        jobs.append(job)
    done = 0
    stop = time.perf_counter() + seconds

    async def worker(conn: asyncpg.Connection, job: uuid.UUID) -> None:
        nonlocal done
        k = 0
        while time.perf_counter() < stop:
            k += 1
            async with conn.transaction():
                await conn.execute(
                    "UPDATE edfi_im.jobs SET progress_message = $2 WHERE id = $1", job, str(k)
                )
            done += 1

    await asyncio.gather(*(worker(c, j) for c, j in zip(conns, jobs, strict=True)))
    for conn in conns:
        await conn.close()
    return done / seconds


async def run(url: str, seconds: float, workers: int) -> dict[str, float]:
    admin = await asyncpg.connect(url)
    definition: str = await admin.fetchval(
        "SELECT pg_get_functiondef('edfi_im.record_change'::regproc)"
    )
    assert EXCLUSIVE in definition and NOTIFY in definition
    out: dict[str, float] = {}
    out["exclusive lock + NOTIFY (as migrated)"] = await commits_per_second(
        url, "migrated", seconds, workers
    )
    await admin.execute(definition.replace(EXCLUSIVE, SHARED))
    out["shared lock + NOTIFY"] = await commits_per_second(url, "shared", seconds, workers)
    await admin.execute(definition.replace(EXCLUSIVE, SHARED).replace(NOTIFY, ""))
    out["shared lock, no NOTIFY"] = await commits_per_second(url, "bare", seconds, workers)
    await admin.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    name = f"edfi_im_bench_commits_{uuid.uuid4().hex[:8]}"
    pg.edfi_admin(name)
    try:
        results = asyncio.run(run(pg.database_url(name), args.seconds, args.workers))
    finally:
        pg.drop(name)
    for label, rate in results.items():
        print(f"{label:<40} {rate:>8.0f} commits/s")


if __name__ == "__main__":
    main()
