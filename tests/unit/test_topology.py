"""The RabbitMQ topology and its exported definitions file."""

from __future__ import annotations

import json

import pytest

from services.runtime.settings import Settings
from services.runtime.topology import (
    DEFINITIONS_FILE,
    Binding,
    Queue,
    Topology,
    build_topology,
    definitions,
    render_definitions,
)


@pytest.fixture(scope="module")
def topology() -> Topology:
    return build_topology(8, 5)


def _queue(topology: Topology, name: str) -> Queue:
    matches = [q for q in topology.queues if q.name == name]
    assert len(matches) == 1, f"expected exactly one queue {name!r}"
    return matches[0]


def _bindings_to(topology: Topology, destination: str) -> list[Binding]:
    return [b for b in topology.bindings if b.destination == destination]


def test_requests_exchange_hashes_consistently(topology: Topology) -> None:
    exchanges = {e.name: e.type for e in topology.exchanges}
    assert exchanges["instances.requests"] == "x-consistent-hash"
    assert exchanges["instances.events"] == "topic"
    assert "instances.dead" in exchanges
    assert len(exchanges) == len(topology.exchanges), "exchange names must be unique"


def test_one_shard_queue_per_shard(topology: Topology) -> None:
    shards = sorted(q.name for q in topology.queues if q.name.startswith("provisioner.shard."))
    assert shards == sorted(f"provisioner.shard.{k}" for k in range(8))


@pytest.mark.parametrize("shard", range(8))
def test_shard_queue_is_quorum_single_consumer_with_delivery_limit_and_dead_letters(
    topology: Topology, shard: int
) -> None:
    args = _queue(topology, f"provisioner.shard.{shard}").arguments
    assert args["x-queue-type"] == "quorum"
    assert args["x-single-active-consumer"] is True
    assert args["x-delivery-limit"] == 5
    assert args["x-dead-letter-exchange"] == "instances.dead"
    assert args["x-dead-letter-routing-key"] == "provisioner.dead"


@pytest.mark.parametrize("shard", range(8))
def test_each_shard_is_bound_to_the_requests_exchange_with_weight_one(
    topology: Topology, shard: int
) -> None:
    assert _bindings_to(topology, f"provisioner.shard.{shard}") == [
        Binding("instances.requests", f"provisioner.shard.{shard}", "1")
    ]


def test_dead_letters_of_the_shards_reach_the_provisioner_dead_queue(
    topology: Topology,
) -> None:
    _queue(topology, "provisioner.dead")
    assert Binding("instances.dead", "provisioner.dead", "provisioner.dead") in topology.bindings


def test_status_queue_receives_every_event(topology: Topology) -> None:
    status = _queue(topology, "status.events")
    assert status.arguments["x-queue-type"] == "quorum"
    assert Binding("instances.events", "status.events", "#") in _bindings_to(
        topology, "status.events"
    )
    dead_key = status.arguments["x-dead-letter-routing-key"]
    assert status.arguments["x-dead-letter-exchange"] == "instances.dead"
    assert any(
        b.source == "instances.dead" and b.routing_key == dead_key for b in topology.bindings
    ), "the status queue's dead letters must be routed to a queue"


def test_every_binding_joins_declared_objects(topology: Topology) -> None:
    exchange_names = {e.name for e in topology.exchanges}
    queue_names = {q.name for q in topology.queues}
    for binding in topology.bindings:
        assert binding.source in exchange_names
        assert binding.destination in queue_names


def test_every_dead_letter_exchange_is_declared(topology: Topology) -> None:
    exchange_names = {e.name for e in topology.exchanges}
    for queue in topology.queues:
        dlx = queue.arguments.get("x-dead-letter-exchange")
        if dlx is not None:
            assert dlx in exchange_names


@pytest.mark.parametrize(("shards", "limit"), [(1, 1), (3, 9), (16, 2)])
def test_shard_count_and_delivery_limit_are_followed(shards: int, limit: int) -> None:
    topology = build_topology(shards, limit)
    shard_queues = [q for q in topology.queues if q.name.startswith("provisioner.shard.")]
    assert len(shard_queues) == shards
    assert {q.arguments["x-delivery-limit"] for q in shard_queues} == {limit}
    hash_bindings = [b for b in topology.bindings if b.source == "instances.requests"]
    assert len(hash_bindings) == shards


def test_definitions_document_is_valid_json_with_durable_objects() -> None:
    document = json.loads(render_definitions(2, 3))
    assert document == definitions(build_topology(2, 3))
    assert all(e["durable"] for e in document["exchanges"])
    assert all(q["durable"] for q in document["queues"])
    assert all(b["destination_type"] == "queue" for b in document["bindings"])


def test_definitions_file_matches_the_default_topology() -> None:
    defaults = Settings.model_fields
    shard_count = defaults["shard_count"].default
    delivery_limit = defaults["delivery_limit"].default
    assert (shard_count, delivery_limit) == (8, 20)

    expected = render_definitions(shard_count, delivery_limit)
    actual = DEFINITIONS_FILE.read_text()

    assert actual == expected, (
        f"{DEFINITIONS_FILE} is out of date with services/runtime/topology.py: "
        "run `just topology` to regenerate it"
    )
