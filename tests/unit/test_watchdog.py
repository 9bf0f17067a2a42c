"""The watchdog restarts the broker connection when consumers stay gone past the grace period,
and leaves a healthy or briefly-unhealthy broker alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.runtime import watchdog
from services.runtime.watchdog import Watchdog


class FakeBroker:
    def __init__(self, up: bool) -> None:
        self.up = up
        self.stops = 0
        self.starts = 0

    async def ping(self, timeout: float | None) -> bool:
        return self.up

    async def stop(self) -> None:
        self.stops += 1

    async def start(self) -> None:
        self.starts += 1
        self.up = True


async def _run_for(dog: Watchdog, seconds: float) -> None:
    task = asyncio.create_task(dog.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.fixture
def consumed(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    state = {"ok": True}

    async def fake(url: str, queues: list[str]) -> bool:
        return state["ok"]

    monkeypatch.setattr(watchdog, "queues_consumed", fake)
    return state


async def test_a_connection_that_stays_down_is_restarted(consumed: dict[str, bool]) -> None:
    broker = FakeBroker(up=False)
    dog = Watchdog(broker, "amqp://x", lambda: ["q"], interval=0.01, grace=0.05)  # type: ignore[arg-type]
    await _run_for(dog, 0.3)
    assert broker.stops >= 1 and broker.starts >= 1
    assert dog.restarts == broker.starts


async def test_queues_left_without_consumers_are_restarted(consumed: dict[str, bool]) -> None:
    consumed["ok"] = False
    broker = FakeBroker(up=True)
    dog = Watchdog(broker, "amqp://x", lambda: ["q"], interval=0.01, grace=0.05)  # type: ignore[arg-type]
    await _run_for(dog, 0.3)
    assert broker.starts >= 1


async def test_a_healthy_broker_is_left_alone(consumed: dict[str, bool]) -> None:
    broker = FakeBroker(up=True)
    dog = Watchdog(broker, "amqp://x", lambda: ["q"], interval=0.01, grace=0.05)  # type: ignore[arg-type]
    await _run_for(dog, 0.2)
    assert (broker.stops, broker.starts) == (0, 0)


async def test_a_blip_shorter_than_the_grace_period_is_tolerated(
    consumed: dict[str, bool],
) -> None:
    broker: Any = FakeBroker(up=False)
    dog = Watchdog(broker, "amqp://x", lambda: ["q"], interval=0.01, grace=5.0)
    await _run_for(dog, 0.2)
    assert broker.starts == 0
