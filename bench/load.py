"""A load generator, run as its own process by bench/instances.py so that its work does not
count against the gateway's: closed loop (`--concurrency` requests in flight for `--seconds`) or
open loop (`--rate` requests a second). Prints one JSON object: latencies, statuses, throughput.

    python -m bench.load --url http://127.0.0.1:8000 --token T --mode create --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from typing import Any

import httpx

from bench.common import percentile


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.ids: list[int] = []
        self.tag = uuid.uuid4().hex[:6]
        self.sent = 0

    async def one(self, client: httpx.AsyncClient) -> None:
        args = self.args
        self.sent += 1
        started = time.perf_counter()
        try:
            if args.mode == "create":
                name = f"{args.prefix} {self.tag} {self.sent}"
                r = await client.post(
                    "/v2/dbInstances", json={"name": name, "databaseTemplate": args.template}
                )
                if r.status_code == 202:
                    self.ids.append(r.json()["id"])
            elif args.mode == "page":
                offset = random.randrange(0, max(1, args.rows - 25))  # noqa: S311 - load, not crypto
                r = await client.get("/v2/dbInstances", params={"offset": offset, "limit": 25})
            else:
                r = await client.get("/health")
        except httpx.HTTPError:
            self.errors += 1
            return
        self.latencies.append(time.perf_counter() - started)
        self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1

    async def run(self) -> dict[str, Any]:
        args = self.args
        limits = httpx.Limits(max_connections=args.concurrency + 4)
        headers = {"Authorization": f"Bearer {args.token}"}
        async with httpx.AsyncClient(
            base_url=args.url, headers=headers, limits=limits, timeout=30
        ) as client:
            began = time.perf_counter()
            # The wall clock as the first request goes: a caller times from here, not from
            # this process's start (its interpreter and imports take ~0.3 s of CPU here).
            started_at = time.time()
            deadline = began + args.seconds
            if args.count:  # exactly `count` requests, `concurrency` at a time, then stop
                left = iter(range(args.count))

                async def drain() -> None:
                    for _ in left:
                        await self.one(client)

                await asyncio.gather(*(drain() for _ in range(args.concurrency)))
            elif args.rate:
                tasks = []
                k = 0
                while time.perf_counter() < deadline:
                    tasks.append(asyncio.create_task(self.one(client)))
                    k += 1
                    await asyncio.sleep(max(0.0, began + k / args.rate - time.perf_counter()))
                await asyncio.gather(*tasks)
            else:

                async def worker() -> None:
                    while time.perf_counter() < deadline:
                        await self.one(client)

                await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            elapsed = time.perf_counter() - began
        lat = self.latencies
        return {
            "mode": args.mode,
            "concurrency": None if args.rate else args.concurrency,
            "rate": args.rate,
            "seconds": round(elapsed, 2),
            "startedAt": started_at,
            "requests": len(lat),
            "errors": self.errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "perSecond": round(len(lat) / elapsed, 1) if elapsed else None,
            "p50_ms": round(statistics.median(lat) * 1000, 2) if lat else None,
            "p99_ms": round(percentile(lat, 99) * 1000, 2) if lat else None,
            "ids": self.ids if args.mode == "create" else [],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--mode", choices=("create", "health", "page"), default="health")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: requests a second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--count", type=int, default=0, help="send exactly this many, then stop")
    parser.add_argument("--template", default="Minimal")
    parser.add_argument("--prefix", default="Load")
    parser.add_argument("--rows", type=int, default=10_000, help="rows to page over (page)")
    print(json.dumps(asyncio.run(Load(parser.parse_args()).run())))


if __name__ == "__main__":
    main()
