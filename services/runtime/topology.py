"""The RabbitMQ objects, declared in code at start-up and exported to infra/rabbitmq/."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel
from aiormq.exceptions import (
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    ConnectionCommandInvalid,
)

from services.rules.errors import ConfigurationError

REQUESTS_EXCHANGE = "instances.requests"
EVENTS_EXCHANGE = "instances.events"
DEAD_EXCHANGE = "instances.dead"
STATUS_QUEUE = "status.events"
PROVISIONER_DEAD_QUEUE = "provisioner.dead"
STATUS_DEAD_QUEUE = "status.dead"
# A copy of every dead-lettered command, for the status service to fail its job visibly; the
# original stays in provisioner.dead to be listed and requeued (`just dead-letters`).
DEAD_COMMANDS_QUEUE = "status.dead-commands"
# Maintenance jobs (reconcile, prune), run by the scheduler service's workers.
MAINTENANCE_EXCHANGE = "maintenance.requests"
MAINTENANCE_QUEUE = "scheduler.maintenance"
MAINTENANCE_DEAD_QUEUE = "scheduler.maintenance.dead"
MAINTENANCE_ROUTING_KEY = "maintenance"
CONSISTENT_HASH = "x-consistent-hash"

DEFINITIONS_FILE = Path(__file__).resolve().parents[2] / "infra" / "rabbitmq" / "definitions.json"


def shard_queue(k: int) -> str:
    return f"provisioner.shard.{k}"


def instance_routing_key(tenant: str | None, instance_id: int) -> str:
    """What the consistent-hash exchange hashes: one instance's commands share a shard, in
    order (tenants number their instances apart, so the tenant is part of the key)."""
    return str(instance_id) if tenant is None else f"{tenant}.{instance_id}"


@dataclass(frozen=True)
class Exchange:
    name: str
    type: str
    description: str


@dataclass(frozen=True)
class Queue:
    name: str
    arguments: dict[str, Any]
    description: str


@dataclass(frozen=True)
class Binding:
    source: str
    destination: str
    routing_key: str


@dataclass(frozen=True)
class Topology:
    exchanges: list[Exchange] = field(default_factory=list)
    queues: list[Queue] = field(default_factory=list)
    bindings: list[Binding] = field(default_factory=list)


def build_topology(shard_count: int, delivery_limit: int) -> Topology:
    def quorum(dead_key: str, single_active: bool) -> dict[str, Any]:
        args: dict[str, Any] = {
            "x-queue-type": "quorum",
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-exchange": DEAD_EXCHANGE,
            "x-dead-letter-routing-key": dead_key,
        }
        if single_active:
            args["x-single-active-consumer"] = True
        return args

    exchanges = [
        Exchange(
            REQUESTS_EXCHANGE,
            CONSISTENT_HASH,
            "Instance commands; routing key = instance id, so one instance always hits one shard",
        ),
        Exchange(EVENTS_EXCHANGE, "topic", "Progress and outcome events from the provisioner"),
        Exchange(DEAD_EXCHANGE, "direct", "Dead letters: messages past their delivery limit"),
        Exchange(MAINTENANCE_EXCHANGE, "direct", "Maintenance jobs: reconcile and prune"),
    ]
    queues = [
        Queue(
            shard_queue(k),
            quorum(PROVISIONER_DEAD_QUEUE, single_active=True),
            f"Shard {k} of {shard_count}: one active consumer, prefetch 1, in order",
        )
        for k in range(shard_count)
    ]
    queues += [
        Queue(STATUS_QUEUE, quorum(STATUS_DEAD_QUEUE, single_active=False), "Events for status"),
        Queue(PROVISIONER_DEAD_QUEUE, {"x-queue-type": "quorum"}, "Dead-lettered commands"),
        Queue(STATUS_DEAD_QUEUE, {"x-queue-type": "quorum"}, "Dead-lettered events"),
        Queue(
            DEAD_COMMANDS_QUEUE,
            {"x-queue-type": "quorum"},
            "Copies of dead-lettered commands: the status service fails their jobs",
        ),
        Queue(
            MAINTENANCE_QUEUE,
            quorum(MAINTENANCE_DEAD_QUEUE, single_active=False),
            "Maintenance jobs for the scheduler's workers",
        ),
        Queue(MAINTENANCE_DEAD_QUEUE, {"x-queue-type": "quorum"}, "Dead-lettered maintenance jobs"),
    ]
    # For a consistent-hash exchange the binding key is the shard's weight.
    bindings = [Binding(REQUESTS_EXCHANGE, shard_queue(k), "1") for k in range(shard_count)]
    bindings += [
        Binding(EVENTS_EXCHANGE, STATUS_QUEUE, "#"),
        Binding(DEAD_EXCHANGE, PROVISIONER_DEAD_QUEUE, PROVISIONER_DEAD_QUEUE),
        Binding(DEAD_EXCHANGE, STATUS_DEAD_QUEUE, STATUS_DEAD_QUEUE),
        Binding(DEAD_EXCHANGE, DEAD_COMMANDS_QUEUE, PROVISIONER_DEAD_QUEUE),
        Binding(MAINTENANCE_EXCHANGE, MAINTENANCE_QUEUE, MAINTENANCE_ROUTING_KEY),
        Binding(DEAD_EXCHANGE, MAINTENANCE_DEAD_QUEUE, MAINTENANCE_DEAD_QUEUE),
    ]
    return Topology(exchanges, queues, bindings)


async def declare(channel: AbstractChannel, topology: Topology) -> None:
    """Declare everything idempotently; explain the usual set-up mistakes."""
    exchanges = {}
    for ex in topology.exchanges:
        try:
            exchanges[ex.name] = await channel.declare_exchange(ex.name, ex.type, durable=True)
        except ConnectionCommandInvalid as exc:
            raise ConfigurationError(
                f"RabbitMQ refused exchange {ex.name!r} of type {ex.type!r}: enable the plugin "
                "with `rabbitmq-plugins enable rabbitmq_consistent_hash_exchange` "
                f"(or run `just broker`). Broker said: {exc}"
            ) from exc
    queues = {}
    for q in topology.queues:
        try:
            queues[q.name] = await channel.declare_queue(
                q.name, durable=True, arguments=q.arguments
            )
        except ChannelPreconditionFailed as exc:
            raise ConfigurationError(
                f"queue {q.name!r} exists with other arguments ({exc}); it was declared by an "
                "older configuration: drain and delete it, or restore the old settings"
            ) from exc
    for b in topology.bindings:
        await queues[b.destination].bind(exchanges[b.source], routing_key=b.routing_key)


async def declare_topology(url: str, shard_count: int, delivery_limit: int) -> None:
    connection = await aio_pika.connect(url)
    try:
        # Each failed declare closes its channel, so declaring on a fresh one keeps errors clear.
        channel = await connection.channel()
        await declare(channel, build_topology(shard_count, delivery_limit))
    except ChannelNotFoundEntity as exc:
        raise ConfigurationError(f"RabbitMQ: {exc}") from exc
    finally:
        await connection.close()


def definitions(topology: Topology, vhost: str = "/") -> dict[str, Any]:
    """The topology as a RabbitMQ definitions document (management UI → Import definitions)."""
    return {
        "exchanges": [
            {
                "name": e.name,
                "vhost": vhost,
                "type": e.type,
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
            for e in topology.exchanges
        ],
        "queues": [
            {
                "name": q.name,
                "vhost": vhost,
                "durable": True,
                "auto_delete": False,
                "arguments": q.arguments,
            }
            for q in topology.queues
        ],
        "bindings": [
            {
                "source": b.source,
                "vhost": vhost,
                "destination": b.destination,
                "destination_type": "queue",
                "routing_key": b.routing_key,
                "arguments": {},
            }
            for b in topology.bindings
        ],
    }


def render_definitions(shard_count: int, delivery_limit: int) -> str:
    return json.dumps(definitions(build_topology(shard_count, delivery_limit)), indent=2) + "\n"
