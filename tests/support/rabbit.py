"""RabbitMQ management API helpers: per-run virtual hosts and queue inspection."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import httpx

MANAGEMENT = "http://127.0.0.1:15672/api"
AUTH = ("guest", "guest")


def _client() -> httpx.Client:
    return httpx.Client(base_url=MANAGEMENT, auth=AUTH, timeout=10)


def create_vhost(name: str) -> None:
    with _client() as c:
        c.put(f"/vhosts/{quote(name, safe='')}").raise_for_status()
        c.put(
            f"/permissions/{quote(name, safe='')}/guest",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()


def delete_vhost(name: str) -> None:
    with _client() as c:
        c.delete(f"/vhosts/{quote(name, safe='')}")


def queue(vhost: str, name: str) -> dict[str, Any]:
    with _client() as c:
        r = c.get(f"/queues/{quote(vhost, safe='')}/{quote(name, safe='')}")
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data


def exchange(vhost: str, name: str) -> dict[str, Any]:
    with _client() as c:
        r = c.get(f"/exchanges/{quote(vhost, safe='')}/{quote(name, safe='')}")
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data


def take_messages(vhost: str, name: str, count: int = 100) -> list[dict[str, Any]]:
    """Remove up to `count` messages from a queue and return them (payload decoded)."""
    with _client() as c:
        r = c.post(
            f"/queues/{quote(vhost, safe='')}/{quote(name, safe='')}/get",
            json={"count": count, "ackmode": "ack_requeue_false", "encoding": "auto"},
        )
        r.raise_for_status()
        out = []
        for m in r.json():
            payload = m["payload"]
            if m.get("payload_encoding") == "base64":
                payload = base64.b64decode(payload).decode()
            m["body"] = json.loads(payload) if payload else None
            out.append(m)
        return out


def amqp_url(vhost: str) -> str:
    return f"amqp://guest:guest@127.0.0.1:5672/{quote(vhost, safe='')}"


async def consume_all(url: str, queue_name: str, idle: float = 0.5) -> list[Any]:
    """Consume (and ack) everything in a queue until it stays empty for `idle` seconds.

    A real consumer rather than basic.get: quorum queues with single active consumer refuse gets.
    """
    import asyncio

    import aio_pika

    got: list[Any] = []
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name, ensure=True)
        async with queue.iterator() as it:
            while True:
                try:
                    message = await asyncio.wait_for(it.__anext__(), timeout=idle)
                except TimeoutError:
                    break
                async with message.process():
                    got.append(message)
    finally:
        await connection.close()
    return got
