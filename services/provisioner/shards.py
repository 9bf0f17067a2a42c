"""Consuming the shard queues: owned shards first, the others as standby, and handing a shard
over safely when the replicas change.

Single active consumer makes the first registered consumer of a shard the active one. A replica
that must give a shard up stops its subscriber (FastStream waits for the message in hand), then
returns to the queue (basic.recover) any message delivered during the stop, and subscribes again
at the back of the line, as standby. Safety does not rest on this: the provisioner holds a
per-instance lock on the ODS server for the whole operation, and the gateway accepts one
operation per instance at a time.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitBroker, RabbitQueue
from faststream.rabbit.schemas import QueueType
from faststream.rabbit.subscriber import RabbitSubscriber
from pydantic import WithJsonSchema

from contracts.messages import InstanceRequested, parse_command
from services.admin_db.tenants import UnknownTenantError
from services.runtime.asyncapi import contract_schema
from services.runtime.logging import get_logger
from services.runtime.messaging import (
    Delivery,
    delivery_attempt,
    message_context,
    parse_or_dead_letter,
)
from services.runtime.metrics import MESSAGES_CONSUMED, MESSAGES_DEAD_LETTERED
from services.runtime.topology import shard_queue

log = get_logger(__name__)

Handle = Callable[[InstanceRequested, int], Awaitable[None]]
# The pause before a failed command is requeued: doubling from the first, at most the last.
REDELIVERY_FIRST_SECONDS = 0.25
REDELIVERY_MAX_SECONDS = 10.0


def redelivery_delay(attempt: int) -> float:
    """The pause before requeueing a command whose `attempt`-th delivery failed (jittered, so
    replicas that failed together do not come back together)."""
    ceiling = min(REDELIVERY_MAX_SECONDS, REDELIVERY_FIRST_SECONDS * 2.0 ** max(0, attempt - 1))
    return float(ceiling * random.uniform(0.5, 1.0))  # noqa: S311 - a jitter, not a secret


# Read from the raw bytes by the handler; the schema is for the AsyncAPI document.
CommandBody = Annotated[Any, WithJsonSchema(contract_schema(InstanceRequested))]


class ShardConsumers:
    def __init__(self, broker: RabbitBroker, handle: Handle) -> None:
        self._broker = broker
        self._handle = handle
        self._subscribers: dict[int, RabbitSubscriber] = {}
        self.owned: set[int] = set()

    def subscriber(self, shard: int) -> RabbitSubscriber:
        """A subscriber on its own channel with prefetch 1: order needs both."""
        sub = self._broker.subscriber(
            RabbitQueue(shard_queue(shard), queue_type=QueueType.QUORUM, declare=False),
            channel=Channel(prefetch_count=1),
            ack_policy=AckPolicy.NACK_ON_ERROR,
            title=shard_queue(shard),
            description="InstanceRequested commands for the instances that hash to this shard",
        )
        handle = self._handle

        @sub
        async def on_request(body: CommandBody, message: Delivery) -> None:
            # `body` is FastStream's decoded copy; the contract is parsed from the raw bytes.
            command = await parse_or_dead_letter(
                message, parse_command, "poison command dead-lettered"
            )
            if command is None:
                return
            with message_context(command, message):
                MESSAGES_CONSUMED.labels(shard_queue(shard)).inc()
                attempt = delivery_attempt(message)
                log.info(
                    "command received",
                    operation=command.operation.value,
                    shard=shard,
                    attempt=attempt,
                )
                try:
                    await handle(command, attempt)
                except UnknownTenantError as exc:
                    # Not this replica's to fix by retrying: dead-letter it (the status
                    # service fails its job if it knows the tenant); requeue once configured.
                    log.error("command for an unknown tenant dead-lettered", reason=str(exc))
                    MESSAGES_DEAD_LETTERED.labels("unknown tenant").inc()
                    await message.reject(requeue=False)
                except Exception as exc:
                    # Neither a step's transient error (retried inside, with backoff) nor a
                    # permanent one (reported as the job's failure): most often an event the
                    # broker would not take (a node lost, a queue's leader being elected). The
                    # command goes back to its queue (NACK_ON_ERROR) after a pause that grows
                    # with each delivery, so a failure that lasts a while does not use up the
                    # delivery limit in a moment and end the job dead-lettered.
                    delay = redelivery_delay(attempt)
                    log.warning(
                        "command failed; requeued after a pause",
                        error=repr(exc)[:500],
                        attempt=attempt,
                        retry_in_seconds=round(delay, 2),
                    )
                    await asyncio.sleep(delay)
                    raise

        self._subscribers[shard] = sub
        return sub

    def register(self, shards: set[int]) -> None:
        """Before the broker starts: subscribe to the shards this replica owns."""
        for k in sorted(shards):
            self.subscriber(k)
        self.owned = set(shards)

    async def join(self, shards: set[int]) -> None:
        """After start: subscribe (as standby, or active if nobody else is there)."""
        for k in sorted(shards - set(self._subscribers)):
            await self.subscriber(k).start()

    async def release(self, shards: set[int]) -> None:
        """Hand shards over: finish the message in hand, return any other, rejoin at the back."""
        for k in sorted(shards):
            sub = self._subscribers.get(k)
            if sub is None:
                continue
            try:
                queue = sub._queue_obj
                await sub.stop()  # waits for the handler in progress, then cancels
                if queue is not None and not queue.channel.is_closed:
                    # A message delivered during the stop was dropped unacknowledged; return
                    # it to the queue now rather than when the connection closes.
                    underlay = await queue.channel.get_underlay_channel()
                    await underlay.basic_recover(requeue=True)
            except Exception as exc:
                log.warning("shard hand-over incomplete", shard=k, error=repr(exc))
            finally:
                # Join again at the back of the line, as standby.
                await self.subscriber(k).start()
            log.info("shard handed over", shard=k)

    async def rebalance(self, owned: set[int]) -> None:
        lost = self.owned - owned
        if owned != self.owned:
            log.info("shard assignment changed", owned=sorted(owned), released=sorted(lost))
        await self.release(lost)
        self.owned = owned
