"""RabbitMQ management API helpers: per-run virtual hosts and queue inspection.

`Broker` talks to one broker (or one node of a cluster) by its management API and AMQP port;
the module-level functions talk to the machine's local broker (`LOCAL`). The fault suite uses
the nodes of a cluster of its own (tests/support/own_rabbit.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

MANAGEMENT = "http://127.0.0.1:15672/api"
AUTH = ("guest", "guest")


@dataclass(frozen=True)
class Broker:
    management: str = MANAGEMENT
    amqp_port: int = 5672

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.management, auth=AUTH, timeout=10)

    def amqp_url(self, vhost: str) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/{quote(vhost, safe='')}"

    def create_vhost(self, name: str) -> None:
        with self._client() as c:
            c.put(f"/vhosts/{quote(name, safe='')}").raise_for_status()
            c.put(
                f"/permissions/{quote(name, safe='')}/guest",
                json={"configure": ".*", "write": ".*", "read": ".*"},
            ).raise_for_status()

    def delete_vhost(self, name: str) -> None:
        with self._client() as c:
            c.delete(f"/vhosts/{quote(name, safe='')}")

    def queue(self, vhost: str, name: str) -> dict[str, Any]:
        with self._client() as c:
            r = c.get(f"/queues/{quote(vhost, safe='')}/{quote(name, safe='')}")
            r.raise_for_status()
            data: dict[str, Any] = r.json()
            return data

    def exchange(self, vhost: str, name: str) -> dict[str, Any]:
        with self._client() as c:
            r = c.get(f"/exchanges/{quote(vhost, safe='')}/{quote(name, safe='')}")
            r.raise_for_status()
            data: dict[str, Any] = r.json()
            return data

    def consumers(self, vhost: str, names: Iterable[str]) -> dict[str, int]:
        """Each queue's consumers as the broker counts them now (0 for a queue that is not
        there): a passive declare over AMQP. The management API's counts lag behind by its
        statistics interval (about 5 s), which every wait for a stack to be ready paid."""
        import asyncio

        import aio_pika
        import aiormq

        async def count() -> dict[str, int]:
            connection = await aio_pika.connect(self.amqp_url(vhost), timeout=5)
            try:
                counts = {}
                for name in names:
                    channel = await connection.channel()
                    try:
                        declared = await channel.declare_queue(name, passive=True)
                        result = declared.declaration_result
                        counts[name] = int(result.consumer_count or 0)
                    except aiormq.exceptions.ChannelNotFoundEntity:
                        counts[name] = 0
                    finally:
                        if not channel.is_closed:
                            await channel.close()
                return counts
            finally:
                await connection.close()

        return asyncio.run(count())

    def take_messages(self, vhost: str, name: str, count: int = 100) -> list[dict[str, Any]]:
        """Remove up to `count` messages from a queue and return them (payload decoded)."""
        with self._client() as c:
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


LOCAL = Broker()


def create_vhost(name: str) -> None:
    LOCAL.create_vhost(name)


def delete_vhost(name: str) -> None:
    LOCAL.delete_vhost(name)


def queue(vhost: str, name: str) -> dict[str, Any]:
    return LOCAL.queue(vhost, name)


def exchange(vhost: str, name: str) -> dict[str, Any]:
    return LOCAL.exchange(vhost, name)


def take_messages(vhost: str, name: str, count: int = 100) -> list[dict[str, Any]]:
    """Remove up to `count` messages from a queue and return them (payload decoded)."""
    return LOCAL.take_messages(vhost, name, count)


def amqp_url(vhost: str) -> str:
    return LOCAL.amqp_url(vhost)


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
