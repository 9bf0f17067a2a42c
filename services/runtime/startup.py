"""Start-up steps wait for the broker and the databases instead of dying at the first refusal
(a service restarted while RabbitMQ or PostgreSQL restarts must come up when they do)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiormq.exceptions import AMQPConnectionError
from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from services.runtime.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")

UNAVAILABLE = (AMQPConnectionError, ConnectionError, OSError, OperationalError, DBAPIError)


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
