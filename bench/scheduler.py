"""Scheduler fire lateness with many active schedules (`just bench`).

For each size, a fresh admin database and RabbitMQ vhost; N interval schedules (prune jobs) whose
first fires are spread evenly over one period; the real firing loop and outbox relay run for the
period plus a margin. Lateness = when the scheduler handled an occurrence minus the occurrence
(the runs table's actual and scheduled fire times). Prints a table, writes JSON to bench/results.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import percentile, write_results
from services.admin_db.engine import create_admin_engine
from services.admin_db.relay import OutboxRelay
from services.admin_db.tables import schedule_runs, schedules
from services.runtime.logging import configure_logging
from services.runtime.publisher import ConfirmingPublisher
from services.runtime.settings import Settings
from services.runtime.topology import declare_topology
from services.scheduler.firing import Scheduler
from tests.support import pg, rabbit


async def _insert_schedules(engine: AsyncEngine, count: int, period: int, start: datetime) -> None:
    rows = []
    for i in range(count):
        first = start + timedelta(seconds=period * i / count)
        rows.append(
            {
                "id": uuid.uuid4(),
                "name": f"bench {i}",
                "job_type": "prune",
                "parameters": {"olderThanDays": 3650},
                "trigger": {
                    "type": "interval",
                    "intervalSeconds": period,
                    "startAt": first.isoformat(),
                },
                "misfire_policy": "fireOnceNow",
                "allow_concurrent": True,
                "state": "Normal",
                "next_fire_time": first,
                "fire_count": 0,
                "created_at": start,
                "updated_at": start,
            }
        )
    async with engine.begin() as conn:
        for k in range(0, len(rows), 1000):
            await conn.execute(insert(schedules), rows[k : k + 1000])


async def measure(count: int, period: int, margin: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    database, vhost = f"edfi_im_bench_{tag}", f"edfi_im_bench_{tag}"
    rabbit.create_vhost(vhost)
    pg.edfi_admin(database)
    settings = Settings(
        admin_database_url=pg.database_url(database), rabbitmq_url=rabbit.amqp_url(vhost)
    )
    await declare_topology(settings.rabbitmq_url, settings.shard_count, settings.delivery_limit)
    engine = create_admin_engine(settings.admin_database_url)
    publisher = ConfirmingPublisher(settings.rabbitmq_url)
    relay = OutboxRelay.from_settings(engine, publisher, settings)
    try:
        start = datetime.now(UTC) + timedelta(seconds=3)
        await _insert_schedules(engine, count, period, start)
        await publisher.connect()
        relay.start()
        scheduler = Scheduler(engine, settings, relay.wake)
        task = asyncio.create_task(scheduler.run())
        began = time.monotonic()
        await asyncio.sleep((start - datetime.now(UTC)).total_seconds() + period + margin)
        task.cancel()
        elapsed = time.monotonic() - began
        window_end = start + timedelta(seconds=period)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        schedule_runs.c.scheduled_fire_time, schedule_runs.c.actual_fire_time
                    ).where(schedule_runs.c.scheduled_fire_time < window_end)
                )
            ).all()
        late = [(r.actual_fire_time - r.scheduled_fire_time).total_seconds() for r in rows]
        return {
            "activeSchedules": count,
            "periodSeconds": period,
            "firesPerSecond": round(count / period, 1),
            "occurrences": count,
            "fired": len(late),
            "lateness_p50_ms": round(statistics.median(late) * 1000, 1) if late else None,
            "lateness_p99_ms": round(percentile(late, 99) * 1000, 1) if late else None,
            "lateness_max_ms": round(max(late) * 1000, 1) if late else None,
            "elapsedSeconds": round(elapsed, 1),
        }
    finally:
        await relay.stop()
        await publisher.close()
        await engine.dispose()
        pg.drop(database)
        rabbit.delete_vhost(vhost)


def main() -> None:
    # As a deployed scheduler logs: JSON lines, here at WARNING so the terminal shows the table.
    configure_logging("scheduler", "WARNING", "json")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--period", type=int, default=30, help="interval of every schedule, s")
    parser.add_argument("--margin", type=int, default=5)
    args = parser.parse_args()
    results = [
        asyncio.run(measure(int(n), args.period, args.margin)) for n in args.sizes.split(",")
    ]
    print()
    print("Scheduler fire lateness (one scheduler replica, real clock, outbox relay running)")
    header = (
        f"{'schedules':>10} {'fires/s':>8} {'fired':>13} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['activeSchedules']:>10} {r['firesPerSecond']:>8} "
            f"{r['fired']:>6}/{r['occurrences']:<6} {r['lateness_p50_ms']:>8} "
            f"{r['lateness_p99_ms']:>8} {r['lateness_max_ms']:>8}"
        )
    defaults = Settings()
    write_results(
        "scheduler",
        settings={
            "pollIntervalSeconds": defaults.scheduler_poll_interval_seconds,
            "batchSize": defaults.scheduler_batch_size,
        },
        results=results,
    )


if __name__ == "__main__":
    main()
