"""The design's floor for one create: the hops DESIGN.md requires between a client's POST and
the `Completed` it sees, made by the plainest code there is (asyncpg, aio-pika, a bare ASGI app
under uvicorn; one process, no framework, none of the services' code), so that what a create
costs beyond a bare clone splits into what the design's hops cost on this machine and what the
services' code adds to them.

The chain, one create (each step waits for the one before, as in the services):
  1. HTTP: a POST to a bare ASGI app served by uvicorn as the gateway is (httptools, uvloop)
     and its answer (the accept's HTTP round trip; the stream's last frame is not counted).
  2. accept: a row INSERTed and committed (a WAL flush), with its NOTIFY-free outbox row.
  3. command: a persistent message published to a quorum queue with publisher confirms,
     received by a consumer (delivery needs the queue's log committed).
  4. claim: an UPDATE committed.
  5. the clone: `CREATE DATABASE ... TEMPLATE ...` on a kept connection.
  6. fence: an UPDATE committed.
  7. outcome: a second quorum-queue hop.
  8. status: an UPDATE and a NOTIFY committed; the NOTIFY received by a listener (as the
     gateway's change feed is woken).
Each hop is also timed alone (`hops`), without the clone.

`lean_chain` is the second measure: every round trip the services make on a create's path, in
their order and with their overlaps (the statements `just bench-profile` logs), made by the same
plain code: the accept's name locks and its one writing statement; the relay's lock, read,
publish and (after the delivery, off the path) its record; the instance's lock and first look on
the ODS server beside the claim; a clone slot's lock; the clone; the mark and the target's check
beside the fence's entry; the rename; the fence's commit; the outcome's hop; the status
service's claim and locks, its dbo row and instance, its job, and the change that trigger makes
and notifies. What a create would cost with every guarantee kept and no framework: how much of
the services' overhead is their statements and how much the code that sends them.

    uv run --frozen python -m bench.floor --pairs 40   (with the system's creates beside it,
                                                         and the lean stack's: bench/lean_stack.py)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import aio_pika
import asyncpg
import httpx

from bench import lean_stack as lean
from bench.common import write_results
from tests.support import pg, rabbit

CHANNEL = "edfi_im_floor"


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The least an HTTP endpoint can be: read the body, answer 202 with a small JSON."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 202,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"id":1}'})


@dataclass
class Floor:
    """Kept connections for the chain: the admin database (three: the gateway's, the
    provisioner's, the status service's), the ODS server, a listener, the broker."""

    admin: asyncpg.Connection
    provisioner: asyncpg.Connection
    status: asyncpg.Connection
    ods: asyncpg.Connection
    listener: asyncpg.Connection
    channel: aio_pika.abc.AbstractChannel
    queue_name: str
    http: httpx.AsyncClient
    received: asyncio.Queue[str]
    notified: asyncio.Queue[str]
    relay: asyncpg.Connection
    slot: asyncpg.Connection
    lean_notified: asyncio.Queue[str]

    async def _commit(self, conn: asyncpg.Connection, statement: str, *args: Any) -> None:
        async with conn.transaction():
            await conn.execute(statement, *args)

    async def http_hop(self) -> None:
        r = await self.http.post("/v2/dbInstances", json={"name": "x", "databaseTemplate": "y"})
        r.raise_for_status()

    async def accept(self, job: str) -> None:
        async with self.admin.transaction():
            await self.admin.execute(
                "INSERT INTO floor_jobs (id, status) VALUES ($1, 'Pending')", job
            )
            await self.admin.execute("INSERT INTO floor_outbox (job) VALUES ($1)", job)

    async def queue_hop(self, job: str) -> None:
        """Published with confirms; done when the consumer has it (the confirm may come after)."""
        publish = asyncio.ensure_future(
            self.channel.default_exchange.publish(
                aio_pika.Message(
                    job.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=job
                ),
                routing_key=self.queue_name,
            )
        )
        while await self.received.get() != job:
            pass
        await publish

    async def claim(self, job: str) -> None:
        await self._commit(
            self.provisioner, "UPDATE floor_jobs SET status = 'Running' WHERE id = $1", job
        )

    async def fence(self, job: str) -> None:
        await self._commit(
            self.provisioner, "UPDATE floor_jobs SET server_done = now() WHERE id = $1", job
        )

    async def settle(self, job: str) -> None:
        """The outcome applied and its NOTIFY received."""
        async with self.status.transaction():
            await self.status.execute(
                "UPDATE floor_jobs SET status = 'Completed' WHERE id = $1", job
            )
            await self.status.execute("SELECT pg_notify($1, $2)", CHANNEL, job)
        while await self.notified.get() != job:
            pass

    async def clone(self, template: str, target: str) -> None:
        await self.ods.execute(f'CREATE DATABASE "{target}" TEMPLATE "{template}"')

    async def chain(self, template: str | None, target: str) -> float:
        """One create's hops (with the clone, if a template is given); seconds."""
        job = str(uuid.uuid4())
        started = time.perf_counter()
        await self.http_hop()
        await self.accept(job)
        await self.queue_hop(job)
        await self.claim(job)
        if template is not None:
            await self.clone(template, target)
        await self.fence(job)
        await self.queue_hop(job)
        await self.settle(job)
        return time.perf_counter() - started

    async def lean_chain(self, template: str, target: str) -> float:
        """One create's every round trip as the services make it (see the module's doc), by
        bench/lean_stack.py's steps in this one process; seconds, as `chain`'s."""
        started = time.perf_counter()
        await self.http_hop()
        instance, job = await lean.accept(self.admin, target, template)
        relayed = asyncio.ensure_future(lean.relay(self.relay, self.channel, self.queue_name))
        while await self.received.get() != job:  # the command delivered
            pass
        await lean.provision(
            self.provisioner, self.ods, self.slot, uuid.UUID(job), instance, template, target
        )
        await self.queue_hop(f"outcome:{job}")
        await lean.settle(self.status, f"outcome:{job}", uuid.UUID(job), instance, target)
        while await self.lean_notified.get() != f"{job}:Completed":
            pass
        seconds = time.perf_counter() - started
        await relayed
        await self.ods.execute("SELECT pg_advisory_unlock_all()")  # the session kept
        return seconds

    async def hops(self, runs: int) -> dict[str, float]:
        """Each hop alone, p50 in ms."""
        timed: dict[str, list[float]] = {}

        async def one(name: str, step: Awaitable[None]) -> None:
            started = time.perf_counter()
            await step
            timed.setdefault(name, []).append(time.perf_counter() - started)

        for _ in range(runs):
            job = str(uuid.uuid4())
            await one("http round trip", self.http_hop())
            await one("commit (accept)", self.accept(job))
            await one("quorum queue hop", self.queue_hop(job))
            await one("commit (claim)", self.claim(job))
            await one("commit + NOTIFY received", self.settle(job))
        return {k: round(statistics.median(v) * 1000, 2) for k, v in timed.items()}


@contextlib.asynccontextmanager
async def floor(database: str, vhost: str, http_url: str) -> AsyncIterator[Floor]:
    url = pg.database_url(database)
    admin, provisioner, status, listener, relay = [await asyncpg.connect(url) for _ in range(5)]
    ods, slot = await asyncpg.connect(pg.SERVER), await asyncpg.connect(pg.SERVER)
    await admin.execute(
        "CREATE TABLE IF NOT EXISTS floor_jobs (id uuid PRIMARY KEY, status text, "
        "server_done timestamptz); "
        "CREATE TABLE IF NOT EXISTS floor_outbox (id bigserial PRIMARY KEY, job uuid)"
    )
    await admin.execute(lean.TABLES)
    notified: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(CHANNEL, lambda *args: notified.put_nowait(args[3]))
    lean_notified: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(lean.CHANNEL, lambda *args: lean_notified.put_nowait(args[3]))
    broker = await aio_pika.connect_robust(rabbit.amqp_url(vhost))
    channel = await broker.channel(publisher_confirms=True)
    queue = await channel.declare_queue(
        "floor.commands", durable=True, arguments={"x-queue-type": "quorum"}
    )
    received: asyncio.Queue[str] = asyncio.Queue()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()
        received.put_nowait(message.message_id or "")

    consumer_channel = await broker.channel()
    await consumer_channel.set_qos(prefetch_count=1)
    consumer_queue = await consumer_channel.get_queue("floor.commands")
    await consumer_queue.consume(on_message)
    async with httpx.AsyncClient(base_url=http_url, timeout=10) as http:
        try:
            yield Floor(
                admin,
                provisioner,
                status,
                ods,
                listener,
                channel,
                queue.name,
                http,
                received,
                notified,
                relay,
                slot,
                lean_notified,
            )
        finally:
            await broker.close()
            for conn in (admin, provisioner, status, listener, ods, relay, slot):
                await conn.close()


@contextlib.contextmanager
def bare_http() -> Any:
    """The bare ASGI app under uvicorn (httptools, uvloop, as the gateway runs), its URL."""
    from tests.support.stack import free_port

    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - uvicorn from our own venv
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.floor:bare_app",
            "--port",
            str(port),
            "--http",
            "httptools",
            "--loop",
            "uvloop",
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(url, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Running:
    """The floor on an event loop in a thread of its own (the benches are synchronous): its
    own admin-like database, RabbitMQ vhost and bare HTTP app, removed by `close`."""

    def __init__(self) -> None:
        import uvloop

        tag = uuid.uuid4().hex[:8]
        self.database = f"edfi_im_floor_{tag}"
        self.vhost = f"edfi_im_floor_{tag}"
        pg.create(self.database)
        rabbit.create_vhost(self.vhost)
        self._stack = contextlib.ExitStack()
        self._loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        try:
            url = self._stack.enter_context(bare_http())
            self._floor_cm = floor(self.database, self.vhost, url)
            self.floor = self._run(self._floor_cm.__aenter__())
        except BaseException:
            self.close()
            raise

    def _run(self, coroutine: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()  # type: ignore[arg-type]

    def chain(self, template: str | None, target: str) -> float:
        seconds: float = self._run(self.floor.chain(template, target))
        return seconds

    def lean_chain(self, template: str, target: str) -> float:
        seconds: float = self._run(self.floor.lean_chain(template, target))
        return seconds

    def hops(self, runs: int) -> dict[str, float]:
        found: dict[str, float] = self._run(self.floor.hops(runs))
        return found

    def close(self) -> None:
        if hasattr(self, "floor"):
            self._run(self._floor_cm.__aexit__(None, None, None))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._stack.close()
        rabbit.delete_vhost(self.vhost)
        pg.drop(self.database)


def main() -> None:
    from bench.instances import TINY, Bench, clone_overhead, drop_prefixed
    from bench.lean_stack import LeanStack

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--pairs",
        type=int,
        default=40,
        help="runs of each (create, bare, floor, lean chain, lean stack)",
    )
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:8]
    prefix = f"EdFi_Ods_floor{tag}_"
    running = Running()
    b = Bench(f"floor_{tag}", prefix, 8, {"Minimal": TINY})
    lean_stack = None
    try:
        b.start()
        lean_stack = LeanStack()
        (row,) = clone_overhead(b, {"Minimal": TINY}, args.pairs, running, lean_stack)
        hops = running.hops(max(10, args.pairs // 2))
    finally:
        b.close()
        running.close()
        if lean_stack is not None:
            lean_stack.close()
        drop_prefixed(prefix)
    result: dict[str, Any] = {"hopsMs": hops, **row}
    print(json.dumps(result, indent=2))
    write_results("floor", results=result)


if __name__ == "__main__":
    main()
