"""Invariant 1: a committed outbox row is published (with confirms) and only then marked sent;
rows go out in commit order; a broker that is down loses nothing."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.messages import InstanceRequested, Operation
from services.admin_db import outbox as outbox_rows
from services.admin_db import relay as outbox
from services.admin_db.engine import create_admin_engine
from services.admin_db.tables import outbox as outbox_table
from services.rules.states import Switch
from services.runtime.publisher import ConfirmingPublisher
from services.runtime.settings import Settings
from tests.support import pg, rabbit
from tests.support.statements import pinged_checkouts, sent_statements

pytestmark = pytest.mark.integration


async def _queue_for_test(settings: Settings) -> tuple[aio_pika.abc.AbstractConnection, str, str]:
    """A private exchange + queue so the test sees only its own messages."""
    connection = await aio_pika.connect(settings.rabbitmq_url)
    channel = await connection.channel()
    name = f"test.outbox.{uuid.uuid4().hex[:8]}"
    exchange = await channel.declare_exchange(name, "direct", auto_delete=True)
    queue = await channel.declare_queue(name, auto_delete=False)
    await queue.bind(exchange, routing_key="k")
    return connection, name, name


async def _enqueue(engine: AsyncEngine, exchange: str, count: int) -> list[uuid.UUID]:
    jobs = [uuid.uuid4() for _ in range(count)]
    async with engine.begin() as conn:
        for job in jobs:
            await outbox_rows.enqueue(
                conn,
                InstanceRequested(
                    job_id=job,
                    instance_id=1,
                    operation=Operation.CREATE,
                    database_name="x",
                    database_template="t",
                ),
                exchange=exchange,
                routing_key="k",
                correlation_id="c",
            )
    return jobs


async def _drain(engine: AsyncEngine, publisher: ConfirmingPublisher) -> None:
    while await outbox.relay_once(engine, publisher, batch=7):
        pass


async def test_rows_are_published_in_order_and_marked_sent(
    settings: Settings, engine: AsyncEngine, vhost: str
) -> None:
    connection, exchange, queue = await _queue_for_test(settings)
    publisher = ConfirmingPublisher(settings.rabbitmq_url)
    try:
        jobs = await _enqueue(engine, exchange, 20)
        await _drain(engine, publisher)
        got = rabbit.take_messages(vhost, queue, count=50)
        assert [uuid.UUID(m["body"]["job_id"]) for m in got] == jobs
        assert all(m["properties"]["delivery_mode"] == 2 for m in got)
        assert got[0]["properties"]["headers"]["type"] == "edfi.instances.InstanceRequested.v1"
        async with engine.connect() as conn:
            unsent = await conn.scalar(
                select(outbox_table.c.id)
                .where(outbox_table.c.exchange == exchange)
                .where(outbox_table.c.sent_at.is_(None))
            )
        assert unsent is None
    finally:
        await publisher.close()
        await connection.close()


async def test_nothing_is_lost_while_the_broker_is_unreachable(
    settings: Settings, engine: AsyncEngine, vhost: str
) -> None:
    connection, exchange, queue = await _queue_for_test(settings)
    down = ConfirmingPublisher("amqp://guest:guest@127.0.0.1:1/")  # nothing listens there
    up = ConfirmingPublisher(settings.rabbitmq_url)
    try:
        jobs = await _enqueue(engine, exchange, 3)
        with pytest.raises(outbox.RelayStalledError):
            await outbox.relay_once(engine, down, batch=10)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(outbox_table.c.sent_at).where(outbox_table.c.exchange == exchange)
                )
            ).all()
        assert len(rows) == 3
        assert all(r.sent_at is None for r in rows)
        await _drain(engine, up)
        got = rabbit.take_messages(vhost, queue, count=50)
        assert [uuid.UUID(m["body"]["job_id"]) for m in got] == jobs
    finally:
        await up.close()
        await connection.close()


async def test_a_message_the_broker_cannot_route_is_parked_and_the_rows_behind_it_flow(
    settings: Settings, engine: AsyncEngine, vhost: str
) -> None:
    """Issue 15: the relay stopped at a refused row and retried it for ever, so one unroutable
    command blocked every later command of its tenant. Now it is parked, visibly, and the rest
    goes out in order."""
    connection, exchange, queue = await _queue_for_test(settings)
    channel = await connection.channel()
    unrouted = f"test.unrouted.{uuid.uuid4().hex[:8]}"
    await channel.declare_exchange(unrouted, "direct", auto_delete=False)
    publisher = ConfirmingPublisher(settings.rabbitmq_url)
    try:
        [poison] = await _enqueue(engine, unrouted, 1)
        behind = await _enqueue(engine, exchange, 3)
        await _drain(engine, publisher)
        got = rabbit.take_messages(vhost, queue, count=50)
        assert [uuid.UUID(m["body"]["job_id"]) for m in got] == behind
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        outbox_table.c.id,
                        outbox_table.c.sent_at,
                        outbox_table.c.parked_at,
                        outbox_table.c.last_error,
                    ).where(outbox_table.c.exchange == unrouted)
                )
            ).one()
            listed = [r.id for r in await outbox_rows.parked(conn)]
        assert row.sent_at is None and row.parked_at is not None
        assert "did not accept" in row.last_error and unrouted in row.last_error
        assert row.id in listed
        assert str(poison) not in [m["body"]["job_id"] for m in got]
        # Leave the table clean for the other tests' relays.
        async with engine.begin() as conn:
            await conn.execute(outbox_table.delete().where(outbox_table.c.exchange == unrouted))
    finally:
        await publisher.close()
        await channel.exchange_delete(unrouted)
        await connection.close()


async def test_a_parked_command_fails_its_job_and_a_requeue_after_the_fix_sends_it(
    settings: Settings, engine: AsyncEngine, vhost: str
) -> None:
    from services.admin_db.accept import accept_create
    from services.admin_db.tables import db_instances, jobs
    from services.status.recovery import requeue_parked
    from tests.conftest import unique_name

    connection, exchange, queue = await _queue_for_test(settings)
    channel = await connection.channel()
    unrouted = f"test.unrouted.{uuid.uuid4().hex[:8]}"
    await channel.declare_exchange(unrouted, "direct", auto_delete=False)
    publisher = ConfirmingPublisher(settings.rabbitmq_url)
    name = unique_name("Parked")
    try:
        async with engine.begin() as conn:
            row = await accept_create(
                conn,
                name=name,
                template_key="Minimal",
                template_database="EdFi_Ods_Minimal_Template",
                database_name=settings.database_name_pattern.format(name=name.replace(" ", "_")),
                correlation_id="test",
                tenant=None,
                switch=Switch(),
            )
            await conn.execute(
                outbox_table.update()
                .where(outbox_table.c.body["job_id"].as_string() == str(row.currentjobid))
                .values(exchange=unrouted)
            )
        await _drain(engine, publisher)
        async with engine.connect() as conn:
            job = (await conn.execute(select(jobs).where(jobs.c.id == row.currentjobid))).one()
            instance = (
                await conn.execute(select(db_instances).where(db_instances.c.id == row.id))
            ).one()
            [parked] = [
                r
                for r in await outbox_rows.parked(conn)
                if r.body["job_id"] == str(row.currentjobid)
            ]
        assert job.status == "Failed" and "could not be published" in job.error
        assert f"edfi-im outbox requeue {parked.id}" in job.error
        assert instance.status == "Error" and instance.error == job.error

        # The fix: the command's exchange routes again; the requeue re-opens the job.
        async with engine.begin() as conn:
            await conn.execute(
                outbox_table.update()
                .where(outbox_table.c.id == parked.id)
                .values(exchange=exchange, routing_key="k")
            )
            said = await requeue_parked(conn, parked.id)
        assert "re-opened" in said
        await _drain(engine, publisher)
        got = rabbit.take_messages(vhost, queue, count=50)
        assert [m["body"]["job_id"] for m in got] == [str(row.currentjobid)]
        async with engine.connect() as conn:
            job = (await conn.execute(select(jobs).where(jobs.c.id == row.currentjobid))).one()
            instance = (
                await conn.execute(select(db_instances).where(db_instances.c.id == row.id))
            ).one()
        assert (job.status, instance.status) == ("Pending", "Pending")
        async with engine.begin() as conn:
            await conn.execute(
                db_instances.update().where(db_instances.c.id == row.id).values(status="Deleted")
            )
    finally:
        await publisher.close()
        await channel.exchange_delete(unrouted)
        await connection.close()


async def test_a_relay_on_a_connection_the_server_ended_publishes_with_no_ping(
    settings: Settings, admin_database: str, vhost: str
) -> None:
    """Issue 18: the relay checks its connection out without the pre-ping (a round trip on
    every create's path); a pooled connection the server ended meanwhile costs it nothing but a
    new connection."""
    url = pg.database_url(admin_database)
    engine = create_admin_engine(url, pool_size=1)
    writer = create_admin_engine(url, pool_size=1)
    connection, exchange, queue = await _queue_for_test(settings)
    publisher = ConfirmingPublisher(settings.rabbitmq_url)
    try:
        async with engine.connect() as conn:
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
        pg.end_own_session(url, pid)
        jobs = await _enqueue(writer, exchange, 2)
        with pinged_checkouts(engine) as pinged:
            assert await outbox.relay_once(engine, publisher, batch=10) == 2
        got = rabbit.take_messages(vhost, queue, count=50)
        assert [uuid.UUID(m["body"]["job_id"]) for m in got] == jobs
        assert pinged and not any(pinged), pinged
    finally:
        await publisher.close()
        await connection.close()
        await engine.dispose()
        await writer.dispose()


async def test_an_idle_relay_polls_with_one_read_and_still_sends_rows_nobody_woke_it_for(
    settings: Settings, admin_database: str, vhost: str
) -> None:
    """Issue 18: a poll with nothing waiting is one read (no transaction, no lock); a row
    written without a wake (another process's) still goes out at the next poll."""
    url = pg.database_url(admin_database)
    engine = create_admin_engine(url, pool_size=1)
    writer = create_admin_engine(url, pool_size=1)
    connection, exchange, queue = await _queue_for_test(settings)
    publisher = ConfirmingPublisher(settings.rabbitmq_url)
    relay = outbox.OutboxRelay(engine, publisher, poll_interval=0.05, batch_size=10)
    relay.start()
    try:
        await asyncio.sleep(0.5)  # its first pass (at start, as if woken) is over
        with sent_statements(engine) as sent:
            await asyncio.sleep(0.5)
            idle = list(sent)
            assert len(idle) >= 3, idle  # it polled
            assert not any("advisory" in s for s in idle), idle
            jobs = await _enqueue(writer, exchange, 2)  # nobody wakes this relay
            got: list[dict[str, object]] = []
            for _ in range(100):
                got += rabbit.take_messages(vhost, queue, count=50)
                if len(got) >= 2:
                    break
                await asyncio.sleep(0.1)
            assert [uuid.UUID(str(m["body"]["job_id"])) for m in got] == jobs  # type: ignore[index]
    finally:
        await relay.stop()
        await publisher.close()
        await connection.close()
        await engine.dispose()
        await writer.dispose()
