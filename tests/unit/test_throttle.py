"""Guessing secrets at /connect/token is slowed to a stop (issue 14: ~10 guesses a second)."""

from __future__ import annotations

from services.gateway.throttle import Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_id_is_locked_after_its_failures_until_the_window_passes() -> None:
    clock = Clock()
    throttle = Throttle(max_failures=3, window=60, clock=clock)
    for _ in range(3):
        assert throttle.wait("scripts", "10.0.0.1") == 0
        throttle.failed("scripts", "10.0.0.1")
        clock.now += 1
    assert throttle.wait("scripts", "10.0.0.1") == 59  # 60 s after the last failure
    assert throttle.wait("scripts", "10.0.0.2") > 0  # another address does not help
    assert throttle.wait("other-client", "10.0.0.2") == 0
    clock.now += 59
    assert throttle.wait("scripts", "10.0.0.1") == 0


def test_one_address_guessing_many_client_ids_is_locked_too() -> None:
    clock = Clock()
    throttle = Throttle(max_failures=2, window=10, clock=clock, address_factor=5)
    for k in range(10):
        throttle.failed(f"guess-{k}", "10.0.0.9")
    assert throttle.wait("never-tried", "10.0.0.9") == 10
    assert throttle.wait("never-tried", "10.0.0.8") == 0


def test_a_success_clears_the_clients_failures() -> None:
    throttle = Throttle(max_failures=2, window=60, clock=Clock())
    throttle.failed("scripts", "a")
    throttle.succeeded("scripts")
    throttle.failed("scripts", "a")
    assert throttle.wait("scripts", "b") == 0
