"""The gateway's correlation middleware as plain ASGI (issue 18): the id a client gives (or a
new one) reaches the handler and comes back on the response, streams included, and each
request's latency is counted under its route's template, never its raw path."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from services.gateway.correlation import CORRELATION_HEADER, CorrelateAndMeasure


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/things/{thing_id}")
    async def thing(thing_id: int, request: Request) -> dict[str, object]:
        return {"id": thing_id, "seen": request.state.correlation_id}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"one\n"
            yield b"two\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    app.add_middleware(CorrelateAndMeasure)
    return app


def _count(route: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "edfi_im_http_request_duration_seconds_count",
        {"method": "GET", "route": route, "status": status},
    )
    return value or 0.0


def test_a_given_id_reaches_the_handler_and_comes_back() -> None:
    client = TestClient(_app())
    given = f"client-{uuid.uuid4()}"
    r = client.get("/things/7", headers={CORRELATION_HEADER: given})
    assert r.json() == {"id": 7, "seen": given}
    assert r.headers[CORRELATION_HEADER] == given


def test_a_request_without_one_gets_a_new_id_each_time() -> None:
    client = TestClient(_app())
    first, second = client.get("/things/1"), client.get("/things/1")
    ids = {first.headers[CORRELATION_HEADER], second.headers[CORRELATION_HEADER]}
    assert len(ids) == 2
    assert first.json()["seen"] == first.headers[CORRELATION_HEADER]
    assert all(uuid.UUID(i) for i in ids)


def test_an_overlong_id_is_cut_to_100_characters() -> None:
    r = TestClient(_app()).get("/things/1", headers={CORRELATION_HEADER: "x" * 500})
    assert r.headers[CORRELATION_HEADER] == "x" * 100


def test_latency_is_counted_by_route_template_and_streams_keep_their_body() -> None:
    client = TestClient(_app())
    before = _count("/things/{thing_id}", "200")
    unmatched = _count("unmatched", "404")
    client.get("/things/1")
    client.get("/things/2")
    assert client.get("/nowhere").status_code == 404
    r = client.get("/stream")
    assert r.text == "one\ntwo\n"
    assert CORRELATION_HEADER in r.headers
    assert _count("/things/{thing_id}", "200") == before + 2
    assert _count("unmatched", "404") == unmatched + 1
