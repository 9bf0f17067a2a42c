"""Invariant 2 (one shard per instance) rests on this topology; routing is tested on the real
broker because FastStream's in-memory broker cannot route an x-consistent-hash exchange."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest

from services.runtime.settings import Settings
from services.runtime.topology import (
    REQUESTS_EXCHANGE,
    STATUS_QUEUE,
    declare_topology,
    shard_queue,
)
from tests.support import rabbit

pytestmark = pytest.mark.integration


async def test_declaring_twice_is_harmless(topology: Settings, vhost: str) -> None:
    await declare_topology(topology.rabbitmq_url, topology.shard_count, topology.delivery_limit)
    assert rabbit.exchange(vhost, REQUESTS_EXCHANGE)["type"] == "x-consistent-hash"


async def test_shards_are_quorum_single_active_consumer_with_dead_lettering(
    topology: Settings, vhost: str
) -> None:
    for k in range(topology.shard_count):
        q = rabbit.queue(vhost, shard_queue(k))
        assert q["type"] == "quorum"
        assert q["arguments"]["x-single-active-consumer"] is True
        assert q["arguments"]["x-delivery-limit"] == topology.delivery_limit
        assert q["arguments"]["x-dead-letter-exchange"] == "instances.dead"
    assert rabbit.queue(vhost, STATUS_QUEUE)["type"] == "quorum"


async def test_an_instance_always_lands_on_the_same_shard(topology: Settings) -> None:
    vhost = f"edfi_im_test_routing_{uuid.uuid4().hex[:8]}"  # nobody else consumes here
    rabbit.create_vhost(vhost)
    url = rabbit.amqp_url(vhost)
    await declare_topology(url, topology.shard_count, topology.delivery_limit)
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(REQUESTS_EXCHANGE)
        keys = [str(i) for i in range(1000, 1040)]
        for _ in range(3):
            for key in keys:
                await exchange.publish(aio_pika.Message(key.encode()), routing_key=key)
        await asyncio.sleep(1.0)
        shard_of: dict[str, set[int]] = {key: set() for key in keys}
        for k in range(topology.shard_count):
            for m in await rabbit.consume_all(url, shard_queue(k)):
                shard_of[m.body.decode()].add(k)
    finally:
        await connection.close()
        rabbit.delete_vhost(vhost)
    assert all(len(shards) == 1 for shards in shard_of.values()), shard_of
    used = {next(iter(s)) for s in shard_of.values()}
    assert len(used) > 1, "40 instances should spread over more than one shard"
