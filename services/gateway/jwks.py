"""An OpenID Connect issuer's signing keys, fetched without blocking the event loop and kept:
one fetch serves every request waiting for it, a key id not yet known refetches the set (at
most once per `min_refresh` seconds), and the set is refreshed after `lifespan` seconds. A slow
or unreachable issuer delays only the requests that need a key it has not given yet."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt


class KeyNotFoundError(Exception):
    """The issuer's key set has no key for this token."""


class JwksCache:
    def __init__(
        self,
        url: str,
        *,
        lifespan: float = 600.0,
        min_refresh: float = 30.0,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._lifespan = lifespan
        self._min_refresh = min_refresh
        self._timeout = timeout
        self._client = client
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def _fetch(self) -> None:
        client = self._client or httpx.AsyncClient(timeout=self._timeout)
        try:
            response = await client.get(self._url)
            response.raise_for_status()
            data: dict[str, Any] = response.json()
        finally:
            if self._client is None:
                await client.aclose()
        keys = jwt.PyJWKSet.from_dict(data).keys
        self._keys = {str(k.key_id): k for k in keys if k.key_id is not None}
        if len(keys) == 1 and keys[0].key_id is None:
            self._keys = {"": keys[0]}
        self._fetched_at = self._clock()

    def _stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at > self._lifespan

    async def key(self, kid: str | None) -> jwt.PyJWK:
        """The signing key of a token's key id (the only key when the set has one)."""
        wanted = kid or ""
        if not self._stale() and wanted in self._keys:
            return self._keys[wanted]
        async with self._lock:  # one fetch for every request waiting on it
            recent = self._fetched_at is not None and (
                self._clock() - self._fetched_at < self._min_refresh
            )
            if self._stale() or (wanted not in self._keys and not recent):
                await self._fetch()
        if wanted in self._keys:
            return self._keys[wanted]
        if not kid and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise KeyNotFoundError(f"no key {kid!r} in the issuer's key set")
