"""Guessing a client's secret is slowed to a stop: after `max_failures` wrong secrets for one
client id (or ten times that from one address) within `window` seconds, `/connect/token`
answers 429 for that id (or address) until `window` seconds after the last failure, the right
secret included. Kept in each gateway replica's memory: with n replicas an attacker gets n times
the tries, still a handful a minute instead of ten a second."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class Throttle:
    def __init__(
        self,
        max_failures: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        address_factor: int = 10,
    ) -> None:
        self._max = max_failures
        self._window = window
        self._clock = clock
        self._address_max = max_failures * address_factor
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        now = self._clock()
        found = self._failures.get(key)
        if found is None:
            return deque()
        while found and found[0] <= now - self._window:
            found.popleft()
        if not found:
            del self._failures[key]
        return found

    def wait(self, client_id: str, address: str) -> float:
        """Seconds to wait before this client id may try from this address (0: go on)."""
        now = self._clock()
        longest = 0.0
        for key, limit in (
            (f"client:{client_id}", self._max),
            (f"address:{address}", self._address_max),
        ):
            recent = self._recent(key)
            if len(recent) >= limit:
                longest = max(longest, recent[-1] + self._window - now)
        return longest

    def failed(self, client_id: str, address: str) -> None:
        now = self._clock()
        for key in (f"client:{client_id}", f"address:{address}"):
            self._failures.setdefault(key, deque()).append(now)
            if len(self._failures) > 100_000:  # never grows without bound
                self._failures.pop(next(iter(self._failures)))

    def succeeded(self, client_id: str) -> None:
        self._failures.pop(f"client:{client_id}", None)
