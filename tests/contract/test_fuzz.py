"""Hostile input (moved from tests/e2e/test_fuzz.py): schemathesis generates requests from the
gateway's own OpenAPI document (valid and invalid bodies, parameters, unicode, huge numbers,
missing fields) and sends them with a token to a gateway of its own (in-process, on an admin
database of its own). No answer may be a 5xx, and every error is problem details."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.support.inprocess import InProcessGateway

pytestmark = pytest.mark.contract

STREAMS = {"/v2/events", "/v2/jobs/{job_id}/events"}


def _check(response: Any, where: str) -> None:
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        content_type = response.headers.get("content-type") or [""]
        assert content_type[0].startswith("application/problem+json"), (where, response.text)
        body = response.json()
        assert body["status"] == response.status_code, where
        assert body.get("title") and body.get("detail"), where


def test_no_server_error_and_every_error_is_a_problem(gateway: InProcessGateway) -> None:
    document = gateway.http.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    headers = {"Authorization": f"Bearer {gateway.token()}"}
    session = gateway.requests_session()
    results = list(schema.get_all_operations())
    operations = [r.ok() for r in results if isinstance(r, schemathesis.core.result.Ok)]
    assert len(operations) == len(results), "the gateway's OpenAPI document has invalid parts"
    # Event streams never end by themselves (tests/e2e/test_events.py checks their refusals).
    operations = [op for op in operations if op.path not in STREAMS]
    assert len(operations) >= 15  # every route of the API is exercised
    runs = [(op, mode) for op in operations for mode in schemathesis.GenerationMode]
    for operation, mode in runs:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case: Any) -> None:
            response = case.call(base_url=gateway.url, session=session, headers=headers, timeout=30)
            _check(response, f"{case.method} {case.formatted_path}")

        try:
            fuzz()
        except Unsatisfiable:
            # Nothing can be made invalid in an operation without inputs (GET /health, …).
            assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
