"""Start-up steps wait for the broker and the databases instead of dying at the first refusal
(a service restarted while RabbitMQ or PostgreSQL restarts must come up when they do)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import psycopg
from aiormq.exceptions import AMQPConnectionError
from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from services.rules.errors import TransientError
from services.runtime.logging import get_logger
from services.runtime.settings import Settings
from services.runtime.topology import declare_topology

log = get_logger(__name__)
T = TypeVar("T")

# The admin database through SQLAlchemy, the ODS server through psycopg (PostgreSQL) or
# aioodbc (SQL Server: its refusals come classified as TransientError), and the broker.
UNAVAILABLE = (
    AMQPConnectionError,
    ConnectionError,
    OSError,
    OperationalError,
    DBAPIError,
    psycopg.OperationalError,
    TransientError,
)


async def when_available(step: Callable[[], Awaitable[T]], what: str, seconds: float) -> T:
    """Run `step`, retrying while a dependency is unreachable, for up to `seconds`."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(UNAVAILABLE),
        stop=stop_after_delay(seconds),
        wait=wait_exponential_jitter(multiplier=0.5, max=5),
        reraise=True,
    ):
        with attempt:
            if attempt.retry_state.attempt_number > 1:
                log.warning(
                    "waiting for a dependency",
                    step=what,
                    try_number=attempt.retry_state.attempt_number,
                )
            return await step()
    raise AssertionError("unreachable")


async def declare_topology_when_available(settings: Settings) -> None:
    """Every service declares the topology at start-up, waiting for the broker if needed."""
    await when_available(
        lambda: declare_topology(
            settings.rabbitmq_url, settings.shard_count, settings.delivery_limit
        ),
        "declare the broker topology",
        settings.startup_wait_seconds,
    )


class BackgroundTasks:
    """The service's own loops (relay, sweeps, watchdog): started after start-up, cancelled
    and awaited at shutdown."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(work))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
