"""What the events API and the dead letters promise beyond their data: an idle stream receives a
heartbeat comment every EDFI_IM_EVENTS_HEARTBEAT_SECONDS (proxies keep it open), and the dead
letters are read with any token but requeued only with full access."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.sse import EventStream
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

READ_ONLY = "edfi_admin_api/read_only"


@pytest.fixture
def beating_gateway(stack: Stack) -> Iterator[str]:
    """A gateway replica whose idle streams get a heartbeat every half second."""
    url = stack.start_gateway("gateway-beat", EDFI_IM_EVENTS_HEARTBEAT_SECONDS="0.5")
    try:
        yield url
    finally:
        assert stack.stop("gateway-beat") == 0


def test_an_idle_stream_gets_heartbeats(stack: Stack, beating_gateway: str) -> None:
    headers = {"Authorization": f"Bearer {stack.token()}"}
    with EventStream(f"{beating_gateway}/v2/events", headers) as events:
        ready = events.next()
        assert ready is not None and ready.event == "ready"
        deadline = time.monotonic() + 10
        while events.comments < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert events.comments >= 3, "an idle stream got fewer than 3 heartbeats in 10 s"
        assert not events.ended.is_set()


def test_dead_letters_are_read_with_any_token_and_requeued_with_full_access_only(
    stack: Stack,
) -> None:
    read_only = {"Authorization": f"Bearer {stack.new_token(READ_ONLY)}"}
    listed = httpx.get(f"{stack.url}/v2/deadLetters", headers=read_only, timeout=30)
    assert listed.status_code == 200, listed.text
    assert isinstance(listed.json(), list)
    refused = httpx.post(
        f"{stack.url}/v2/deadLetters/any-message-id/requeue", headers=read_only, timeout=30
    )
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert httpx.get(f"{stack.url}/v2/deadLetters", timeout=30).status_code == 401
