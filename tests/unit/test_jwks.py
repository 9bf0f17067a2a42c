"""An OIDC issuer's keys are fetched without blocking the event loop (issue 15: a slow issuer
stalled every request), once for all the requests waiting for them, and kept."""

from __future__ import annotations

import asyncio
import json

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.gateway.jwks import JwksCache, KeyNotFoundError


def _jwks(*kids: str) -> dict[str, object]:
    keys = []
    for kid in kids:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
        keys.append(jwk | {"kid": kid, "use": "sig", "alg": "RS256"})
    return {"keys": keys}


class Issuer:
    """A JWKS endpoint that answers slowly and counts its calls."""

    def __init__(self, document: dict[str, object], delay: float) -> None:
        self.document = document
        self.delay = delay
        self.calls = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return httpx.Response(200, json=self.document)


async def test_a_slow_issuer_does_not_stall_the_event_loop_and_is_asked_once() -> None:
    issuer = Issuer(_jwks("k1"), delay=0.5)
    client = httpx.AsyncClient(transport=httpx.MockTransport(issuer))
    cache = JwksCache("https://login.example.org/jwks", client=client)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    running = asyncio.create_task(ticker())
    keys = await asyncio.gather(*(cache.key("k1") for _ in range(20)))
    running.cancel()
    assert {k.key_id for k in keys} == {"k1"}
    assert issuer.calls == 1  # twenty requests, one fetch
    assert ticks >= 20  # the loop went on while the issuer was slow (~50 ticks in 0.5 s)
    await cache.key("k1")
    assert issuer.calls == 1  # kept
    await client.aclose()


async def test_an_unknown_key_id_refetches_at_most_once_per_interval() -> None:
    issuer = Issuer(_jwks("k1"), delay=0)
    now = [0.0]
    client = httpx.AsyncClient(transport=httpx.MockTransport(issuer))
    cache = JwksCache(
        "https://login.example.org/jwks", client=client, min_refresh=30, clock=lambda: now[0]
    )
    await cache.key("k1")
    with pytest.raises(KeyNotFoundError):
        await cache.key("rotated")
    assert issuer.calls == 1  # fetched a moment ago: not again
    now[0] = 31
    issuer.document = _jwks("rotated")
    assert (await cache.key("rotated")).key_id == "rotated"
    assert issuer.calls == 2
    await client.aclose()
