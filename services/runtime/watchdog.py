"""Consumers come back after a broker restart — and if they do not, this brings them back.

aio-pika's robust connection usually restores channels and consumers after RabbitMQ restarts,
but not always (a known failure: the connection stays closed, or the queue is left with zero
consumers). Every few seconds the watchdog checks that the broker connection is up and, over a
fresh short-lived connection, that each of this service's queues has a consumer. When that
stays false past a grace period, it restarts the FastStream broker in-process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aio_pika
from faststream.rabbit import RabbitBroker

from services.runtime.logging import get_logger
from services.runtime.settings import Settings

log = get_logger(__name__)


async def queues_consumed(url: str, queues: list[str]) -> bool:
    connection = await aio_pika.connect(url, timeout=5)
    try:
        channel = await connection.channel()
        for name in queues:
            declared = await channel.declare_queue(name, passive=True)
            if not declared.declaration_result.consumer_count:
                log.warning("queue has no consumer", queue=name)
                return False
        return True
    finally:
        await connection.close()


class Watchdog:
    def __init__(
        self,
        broker: RabbitBroker,
        url: str,
        queues: Callable[[], list[str]],
        *,
        interval: float = 5.0,
        grace: float = 20.0,
    ) -> None:
        self._broker = broker
        self._url = url
        self._queues = queues
        self._interval = interval
        self._grace = grace
        self.restarts = 0

    @classmethod
    def from_settings(
        cls, broker: RabbitBroker, settings: Settings, queues: Callable[[], list[str]]
    ) -> Watchdog:
        return cls(
            broker,
            settings.rabbitmq_url,
            queues,
            interval=settings.watchdog_interval_seconds,
            grace=settings.watchdog_grace_seconds,
        )

    async def healthy(self) -> bool:
        try:
            if not await self._broker.ping(timeout=5):
                log.warning("broker connection is down")
                return False
            return await queues_consumed(self._url, self._queues())
        except Exception as exc:  # the broker itself may be restarting: not our fault yet
            log.warning("watchdog check failed", error=repr(exc))
            return False

    async def run(self) -> None:
        bad_since: float | None = None
        while True:
            await asyncio.sleep(self._interval)
            if await self.healthy():
                bad_since = None
                continue
            now = time.monotonic()
            bad_since = bad_since or now
            if now - bad_since < self._grace:
                continue
            log.error("consumers did not come back; restarting the broker connection")
            try:
                await self._broker.stop()
                await self._broker.start()
                self.restarts += 1
                log.info("broker connection restarted", restarts=self.restarts)
            except Exception as exc:
                log.error("broker restart failed; will try again", error=repr(exc))
            bad_since = None
