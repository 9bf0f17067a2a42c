"""A command whose handling fails in a way that is neither a step's transient error nor a
permanent one (an event the broker would not take while a node is lost, say) goes back to its
shard queue after a pause that grows with each delivery: a failure that lasts a couple of
seconds does not use up the queue's delivery limit and end the job dead-lettered."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid

import aio_pika
import pytest

from contracts.messages import InstanceRequested, Operation, message_type
from services.provisioner.shards import ShardConsumers
from services.runtime.messaging import make_broker
from services.runtime.settings import Settings
from services.runtime.topology import PROVISIONER_DEAD_QUEUE, shard_queue
from tests.support import rabbit

pytestmark = pytest.mark.integration

FAILING_FOR_SECONDS = 2.0


async def test_a_failure_lasting_two_seconds_is_ridden_out_not_dead_lettered(
    topology: Settings,
) -> None:
    settings = topology
    assert settings.delivery_limit == 20  # what production runs with
    command = InstanceRequested(
        job_id=uuid.uuid4(),
        instance_id=4242,
        operation=Operation.CREATE,
        database_name="EdFi_Ods_redelivery",
        database_template="EdFi_Ods_Minimal_Template",
    )
    attempts: list[tuple[int, float]] = []
    done = asyncio.Event()

    async def handle(cmd: InstanceRequested, attempt: int) -> None:
        attempts.append((attempt, time.monotonic()))
        if attempts[-1][1] - attempts[0][1] < FAILING_FOR_SECONDS:
            raise RuntimeError("the broker did not confirm the event")
        assert cmd.job_id == command.job_id
        done.set()

    broker = make_broker(settings, "redelivery-test")
    ShardConsumers(broker, handle).register({0})
    await broker.start()
    try:
        connection = await aio_pika.connect(settings.rabbitmq_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await channel.default_exchange.publish(
                aio_pika.Message(
                    command.model_dump_json().encode(),
                    message_id=str(uuid.uuid4()),
                    type=message_type(command),
                    headers={"type": message_type(command)},
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=shard_queue(0),
            )
        try:
            await asyncio.wait_for(done.wait(), timeout=60)
        except TimeoutError:
            pytest.fail(f"never handled; attempts: {[a for a, _ in attempts]}")
    finally:
        await broker.stop()
    # It came back a few times, further apart each time, and was handled, not dead-lettered.
    numbers = [a for a, _ in attempts]
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    assert 2 <= len(numbers) < settings.delivery_limit
    gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(attempts)]
    assert all(g >= 0.1 for g in gaps), gaps
    dead = await rabbit.consume_all(settings.rabbitmq_url, PROVISIONER_DEAD_QUEUE)
    assert dead == []
