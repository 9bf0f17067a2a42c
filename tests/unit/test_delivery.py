"""A handler's `message: Delivery` parameter is the delivery, resolved on the event loop: no
worker thread per message (issue 18; FastStream's own `RabbitMessage` parameter takes one)."""

from __future__ import annotations

from typing import Any

import fast_depends.utils
import pytest
from faststream.rabbit import RabbitBroker, TestRabbitBroker
from faststream.rabbit.message import RabbitMessage as RabbitDelivery

from services.runtime.messaging import Delivery


async def test_a_handler_gets_its_delivery_without_a_worker_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hops: list[Any] = []
    real = fast_depends.utils.run_in_threadpool

    async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(fast_depends.utils, "run_in_threadpool", counted)
    broker = RabbitBroker()
    got: list[RabbitDelivery] = []

    @broker.subscriber("delivery-test")
    async def handler(body: Any, message: Delivery) -> None:
        got.append(message)

    async with TestRabbitBroker(broker) as br:
        await br.publish({"a": 1}, "delivery-test", message_id="m-1")

    assert len(got) == 1
    assert isinstance(got[0], RabbitDelivery)
    assert got[0].message_id == "m-1"
    assert got[0].body == b'{"a":1}'
    assert hops == []  # FastStream's RabbitMessage parameter would have taken one here
