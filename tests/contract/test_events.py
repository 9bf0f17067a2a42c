"""The events API in the gateway's OpenAPI document (moved from tests/e2e/test_events.py; the
streams themselves, across the services, stay end-to-end)."""

from __future__ import annotations

import pytest

from tests.support.inprocess import InProcessGateway

pytestmark = pytest.mark.contract


def test_the_events_routes_are_in_the_openapi_document(gateway: InProcessGateway) -> None:
    paths = gateway.http.get("/openapi.json").json()["paths"]
    for path in ("/v2/events", "/v2/jobs/{job_id}/events", "/v2/deadLetters"):
        assert path in paths, path
    get = paths["/v2/events"]["get"]
    assert "text/event-stream" in get["responses"]["200"]["content"]
    assert {"name": "Last-Event-ID", "in": "header"}.items() <= {
        k: v for p in get["parameters"] for k, v in p.items() if p["name"] == "Last-Event-ID"
    }.items()
