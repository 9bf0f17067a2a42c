"""The lean stack: the design's three services as three plain processes, each making the
services' statements on a create's path (the lean chain of bench/floor.py) with asyncpg and
aio-pika and nothing else, so that a create's overhead splits once more: what the design's
process topology costs (three processes, a broker between them, a client following the job's
event stream over HTTP) with every statement kept, and what the services' code adds to it.

- gateway: a bare ASGI app under uvicorn (httptools, uvloop). `POST /create` accepts in one
  transaction (the name locks, then the instance, job and command in one statement) and wakes
  its relay, which publishes the command with confirms to a quorum queue and records it sent.
  `GET /events/{job}` streams the job: its row read, then one frame per change of it that the
  change trigger notifies (LISTEN), until it ends.
- provisioner: consumes the commands (prefetch 1): the instance's lock and first look on the
  ODS server beside the claim, a clone slot, the clone, the mark and the target's check beside
  the fence's entry, the rename, the fence's commit; the outcome published with confirms.
- status: consumes the outcomes: the inbox claim with both rows locked, the dbo row with the
  instance's outcome, the job's (its change notified by the trigger), committed; then the ack.

    python -m bench.lean_stack --role gateway|provisioner|status --database-url U --amqp-url A
      [--ods-url U] [--port P]
Started and used by bench.instances (`LeanStack`); its steps (`accept`, `relay`, `provision`,
`settle`) are also bench/floor.py's lean chain, in one process. Not a service.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx

from tests.support import pg, rabbit

COMMANDS = "lean.commands"
EVENTS = "lean.events"
ROOT = Path(__file__).resolve().parent.parent
CHANNEL = "edfi_im_lean"

# The lean chain's tables: the services' (instances, jobs, outbox, inbox, dbo rows, changes)
# cut to the columns its statements touch; a job's change is numbered and notified by a
# trigger, as the services' change feed is.
TABLES = f"""
CREATE TABLE IF NOT EXISTS lean_instances (id bigserial PRIMARY KEY, name text UNIQUE,
    dbname text UNIQUE, status text NOT NULL, job uuid, ods_id integer);
CREATE TABLE IF NOT EXISTS lean_jobs (id uuid PRIMARY KEY, instance bigint NOT NULL,
    status text NOT NULL, command jsonb, claimed_at timestamptz, server_done timestamptz,
    finished_at timestamptz);
CREATE TABLE IF NOT EXISTS lean_outbox (id bigserial PRIMARY KEY, job uuid NOT NULL,
    body jsonb NOT NULL, sent_at timestamptz);
CREATE TABLE IF NOT EXISTS lean_inbox (consumer text, message_id text,
    processed_at timestamptz NOT NULL, PRIMARY KEY (consumer, message_id));
CREATE TABLE IF NOT EXISTS lean_dbo (id serial PRIMARY KEY, name text, connection text);
CREATE TABLE IF NOT EXISTS lean_changes (id bigserial PRIMARY KEY, row_id text, state jsonb);
CREATE OR REPLACE FUNCTION lean_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  INSERT INTO lean_changes (row_id, state) VALUES (NEW.id::text, to_jsonb(NEW)) RETURNING id
    INTO n;
  PERFORM pg_notify('{CHANNEL}', NEW.id::text || ':' || NEW.status);
  RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS lean_jobs_changed ON lean_jobs;
CREATE TRIGGER lean_jobs_changed AFTER INSERT OR UPDATE ON lean_jobs
    FOR EACH ROW EXECUTE FUNCTION lean_changed();
DROP TRIGGER IF EXISTS lean_instances_changed ON lean_instances;
CREATE TRIGGER lean_instances_changed AFTER INSERT OR UPDATE ON lean_instances
    FOR EACH ROW EXECUTE FUNCTION lean_changed();
"""
LOOK = (
    "SELECT datname, shobj_description(oid, 'pg_database'), datistemplate FROM pg_database "
    "WHERE datname = ANY($1::text[])"
)


async def _channel(amqp_url: str) -> tuple[aio_pika.abc.AbstractRobustConnection, Any]:
    broker = await aio_pika.connect_robust(amqp_url)
    channel = await broker.channel(publisher_confirms=True)
    for name in (COMMANDS, EVENTS):
        await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
    return broker, channel


async def _publish(channel: Any, queue: str, body: dict[str, Any], message_id: str) -> None:
    """Persistent, with the broker's confirm awaited."""
    await channel.default_exchange.publish(
        aio_pika.Message(
            json.dumps(body).encode(),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            content_type="application/json",
        ),
        routing_key=queue,
    )


async def accept(conn: asyncpg.Connection, name: str, template: str) -> tuple[int, str]:
    """The accept's transaction: the name locks (with the new id), then the instance, its job
    and its command in the outbox in one statement. The instance's id and the job's."""
    job = uuid.uuid4()
    async with conn.transaction():
        instance: int = await conn.fetchval(
            "SELECT nextval('lean_instances_id_seq') FROM (SELECT "
            "pg_advisory_xact_lock(1, hashtext($1)), pg_advisory_xact_lock(2, hashtext($1))) "
            "AS locked",
            name,
        )
        command = json.dumps(
            {"job": str(job), "instance": instance, "name": name, "template": template}
        )
        written = await conn.fetchval(
            "WITH i AS (INSERT INTO lean_instances (id, name, dbname, status, job) "
            "SELECT $1, $2, $2, 'Pending', $3 WHERE NOT EXISTS (SELECT FROM lean_instances "
            "WHERE name = $2 OR dbname = $2) RETURNING id), "
            "j AS (INSERT INTO lean_jobs (id, instance, status, command) "
            "SELECT $3, id, 'Pending', $4::jsonb FROM i), "
            "o AS (INSERT INTO lean_outbox (job, body) SELECT $3, $4::jsonb FROM i) "
            "SELECT id FROM i",
            instance,
            name,
            job,
            command,
        )
    if written is None:
        raise ValueError(f"{name!r} is taken")
    return instance, str(job)


async def relay(conn: asyncpg.Connection, channel: Any, queue: str) -> None:
    """The relay's transaction: its lock, the unsent rows in order, each published with
    confirms (the message id: the job), then recorded sent."""
    async with conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(42)"):
            return
        rows = await conn.fetch(
            "SELECT id, job, body FROM lean_outbox WHERE sent_at IS NULL ORDER BY id LIMIT 100"
        )
        for row in rows:
            await channel.default_exchange.publish(
                aio_pika.Message(
                    row["body"].encode(),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=str(row["job"]),
                    content_type="application/json",
                ),
                routing_key=queue,
            )
        if rows:
            await conn.execute(
                "UPDATE lean_outbox SET sent_at = now() WHERE id = ANY($1::bigint[])",
                [row["id"] for row in rows],
            )


async def provision(
    admin: asyncpg.Connection,
    session: asyncpg.Connection,
    slot: asyncpg.Connection,
    job: uuid.UUID,
    instance: int,
    template: str,
    target: str,
) -> None:
    """The instance's lock and first look on the ODS server (the session, kept: its lock is the
    caller's to end) beside the claim; a clone slot; the clone; the mark and the target's check
    beside the fence's entry; the rename; the fence's commit."""
    staging = f"{target}_staging"[:63]

    async def lock_and_look() -> None:
        assert await session.fetchval("SELECT pg_try_advisory_lock($1)", 1000 + instance)
        await session.fetch(LOOK, [target, template, staging])

    claimed = admin.fetchval(
        "UPDATE lean_jobs j SET status = 'Running', claimed_at = now() FROM lean_instances i "
        "WHERE j.id = $1 AND i.id = j.instance AND i.job = j.id AND j.status = 'Pending' "
        "RETURNING j.id",
        job,
    )
    _, held = await asyncio.gather(lock_and_look(), claimed)
    assert held == job
    assert await slot.fetchval("SELECT pg_try_advisory_lock(7)")
    try:
        await session.execute(f'CREATE DATABASE "{staging}" TEMPLATE "{template}"')
    finally:
        await slot.execute("SELECT pg_advisory_unlock_all()")

    async def mark_and_look() -> None:
        await session.execute(f"COMMENT ON DATABASE \"{staging}\" IS 'edfi-im:{job}'")
        assert not await session.fetch(LOOK, [target])

    fence = admin.transaction()
    await fence.start()
    try:
        _, may_act = await asyncio.gather(
            mark_and_look(),
            admin.fetchval(
                "UPDATE lean_jobs SET server_done = CASE WHEN status = 'Running' THEN now() "
                "END WHERE id = $1 RETURNING server_done IS NOT NULL",
                job,
            ),
        )
        assert may_act
        await session.execute(f'ALTER DATABASE "{staging}" RENAME TO "{target}"')
    except BaseException:
        await fence.rollback()
        raise
    await fence.commit()


async def settle(
    conn: asyncpg.Connection, message_id: str, job: uuid.UUID, instance: int, database: str
) -> None:
    """The status service's transaction: the inbox claim with both rows locked, the dbo row
    with the instance's outcome, the job's (its change notified by the trigger)."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "WITH claimed AS (INSERT INTO lean_inbox VALUES ('status', $1, now()) "
            "ON CONFLICT DO NOTHING RETURNING 1) SELECT i.status, j.status AS job_status, "
            "EXISTS (SELECT FROM claimed) AS fresh FROM lean_instances i "
            "JOIN lean_jobs j ON j.id = $2 WHERE i.id = $3 FOR UPDATE OF i, j",
            message_id,
            job,
            instance,
        )
        if row is None or not row["fresh"]:
            return
        await conn.execute(
            "WITH d AS (INSERT INTO lean_dbo (name, connection) VALUES ($1, $2) RETURNING id) "
            "UPDATE lean_instances SET status = 'Completed', ods_id = (SELECT id FROM d) "
            "WHERE id = $3",
            database,
            f"Host=localhost;Database={database}",
            instance,
        )
        await conn.execute(
            "UPDATE lean_jobs SET status = 'Completed', finished_at = now() WHERE id = $1", job
        )


class Gateway:
    """The accept, the relay and the job's event stream."""

    def __init__(self, database_url: str, amqp_url: str) -> None:
        self.database_url = database_url
        self.amqp_url = amqp_url
        self.wake = asyncio.Event()
        self.following: dict[str, asyncio.Queue[str]] = {}

    async def start(self) -> None:
        self.pool = await asyncpg.create_pool(self.database_url, min_size=4, max_size=8)
        self.relay_conn = await asyncpg.connect(self.database_url)
        self.listener = await asyncpg.connect(self.database_url)
        await self.listener.add_listener(CHANNEL, self._notified)
        self.broker, self.channel = await _channel(self.amqp_url)
        self.relay_task = asyncio.create_task(self._relay())

    def _notified(self, *args: Any) -> None:
        job, _, status = str(args[3]).partition(":")
        queue = self.following.get(job)
        if queue is not None:
            queue.put_nowait(status)

    async def _relay(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=0.2)
            self.wake.clear()
            await relay(self.relay_conn, self.channel, COMMANDS)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        path: str = scope["path"]
        if scope["method"] == "POST" and path == "/create":
            data = json.loads(body)
            async with self.pool.acquire() as conn:
                instance, job = await accept(conn, data["name"], data["template"])
            self.wake.set()
            await _answer(send, 202, {"id": instance, "jobId": job})
        elif scope["method"] == "GET" and path.startswith("/events/"):
            await self.stream(path.removeprefix("/events/"), send)
        else:
            await _answer(send, 404, {})

    async def stream(self, job: str, send: Any) -> None:
        """The job's row, then each of its changes, until it ends (a frame each)."""
        queue: asyncio.Queue[str] = asyncio.Queue()
        self.following[job] = queue
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            async with self.pool.acquire() as conn:
                status = await conn.fetchval(
                    "SELECT status FROM lean_jobs WHERE id = $1::uuid", job
                )
            while True:
                frame = json.dumps({"jobId": job, "status": status})
                await send(
                    {
                        "type": "http.response.body",
                        "body": f"data: {frame}\n\n".encode(),
                        "more_body": status not in ("Completed", "Failed"),
                    }
                )
                if status in ("Completed", "Failed"):
                    return
                status = await queue.get()
        finally:
            self.following.pop(job, None)


async def _answer(send: Any, status: int, body: dict[str, Any]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


async def _consume(amqp_url: str, queue_name: str, on_message: Any) -> Any:
    """`on_message` on each message of the queue, one at a time (prefetch 1); the publishing
    channel (with confirms)."""
    broker, channel = await _channel(amqp_url)
    consuming = await broker.channel()
    await consuming.set_qos(prefetch_count=1)
    queue = await consuming.get_queue(queue_name)
    await queue.consume(on_message)
    return channel


async def provisioner(database_url: str, amqp_url: str, ods_url: str) -> None:
    admin = await asyncpg.connect(database_url)
    session = await asyncpg.connect(ods_url)
    slot = await asyncpg.connect(ods_url)
    channel: Any = None

    async def on_command(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        cmd = json.loads(message.body)
        job, instance, target = uuid.UUID(cmd["job"]), cmd["instance"], cmd["name"]
        await provision(admin, session, slot, job, instance, cmd["template"], target)
        outcome = {"job": str(job), "instance": instance, "database": target}
        await _publish(channel, EVENTS, outcome, f"outcome:{job}")
        await message.ack()
        await session.execute("SELECT pg_advisory_unlock_all()")

    channel = await _consume(amqp_url, COMMANDS, on_command)
    await asyncio.Future()


async def status(database_url: str, amqp_url: str) -> None:
    conn = await asyncpg.connect(database_url)

    async def on_event(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        event = json.loads(message.body)
        job = uuid.UUID(event["job"])
        await settle(conn, message.message_id or "", job, event["instance"], event["database"])
        await message.ack()

    await _consume(amqp_url, EVENTS, on_event)
    await asyncio.Future()


async def serve_gateway(database_url: str, amqp_url: str, port: int) -> None:
    import uvicorn

    gateway = Gateway(database_url, amqp_url)
    await gateway.start()
    config = uvicorn.Config(
        gateway.app,
        port=port,
        http="httptools",
        loop="none",
        log_level="warning",
        access_log=False,
        lifespan="off",
        interface="asgi3",
    )
    await uvicorn.Server(config).serve()


class LeanStack:
    """The three lean processes on a database and vhost of their own (removed by `close`),
    and a client that creates and follows as `Bench.create_and_follow` does."""

    def __init__(self) -> None:
        from tests.support.stack import free_port

        tag = uuid.uuid4().hex[:8]
        self.database = f"edfi_im_lean_{tag}"
        self.vhost = f"edfi_im_lean_{tag}"
        pg.create(self.database)
        pg.execute(self.database, TABLES)
        rabbit.create_vhost(self.vhost)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        common = [
            *("--database-url", pg.database_url(self.database)),
            *("--amqp-url", rabbit.amqp_url(self.vhost)),
        ]
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            for role, extra in (
                ("gateway", ["--port", str(port)]),
                ("provisioner", ["--ods-url", pg.SERVER]),
                ("status", []),
            ):
                self.procs.append(
                    subprocess.Popen(  # noqa: S603 - our own module
                        [sys.executable, "-m", "bench.lean_stack", "--role", role, *common, *extra],
                        cwd=ROOT,
                    )
                )
            self.client = httpx.Client(base_url=self.url, timeout=60)
            deadline = time.monotonic() + 30
            while True:
                try:
                    self.client.get("/ready")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        except BaseException:
            self.close()
            raise

    def create_and_follow(self, name: str, template: str) -> str:
        r = self.client.post("/create", json={"name": name, "template": template})
        r.raise_for_status()
        job = r.json()["jobId"]
        status = "?"
        with self.client.stream("GET", f"/events/{job}") as events:
            for line in events.iter_lines():
                if line.startswith("data:"):
                    status = json.loads(line[5:])["status"]
        return status

    def close(self) -> None:
        if hasattr(self, "client"):
            self.client.close()
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=10)
        rabbit.delete_vhost(self.vhost)
        pg.drop(self.database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--role", choices=["gateway", "provisioner", "status"], required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--ods-url")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    import uvloop

    if args.role == "gateway":
        uvloop.run(serve_gateway(args.database_url, args.amqp_url, args.port))
    elif args.role == "provisioner":
        uvloop.run(provisioner(args.database_url, args.amqp_url, args.ods_url))
    else:
        uvloop.run(status(args.database_url, args.amqp_url))


if __name__ == "__main__":
    main()
