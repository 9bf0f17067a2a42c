"""Hostile input: schemathesis generates requests from the gateway's own OpenAPI document (valid
and invalid bodies, parameters, unicode, huge numbers, missing fields) and sends them with a
token to a system of its own. No answer may be a 5xx, and every error is problem details."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.support.cluster import cluster
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

STREAMS = {"/v2/events", "/v2/jobs/{job_id}/events"}


@pytest.fixture(scope="module")
def target(
    settings_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with cluster(settings_env, Path(tmp_path_factory.mktemp("fuzz"))) as system:
        yield system


def _check(response: Any, where: str) -> None:
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        content_type = response.headers.get("content-type") or [""]
        assert content_type[0].startswith("application/problem+json"), (where, response.text)
        body = response.json()
        assert body["status"] == response.status_code, where
        assert body.get("title") and body.get("detail"), where


def test_no_server_error_and_every_error_is_a_problem(target: Stack) -> None:
    document = httpx.get(f"{target.url}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    headers = {"Authorization": f"Bearer {target.token()}"}
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
            response = case.call(base_url=target.url, headers=headers, timeout=30)
            _check(response, f"{case.method} {case.formatted_path}")

        try:
            fuzz()
        except Unsatisfiable:
            # Nothing can be made invalid in an operation without inputs (GET /health, …).
            assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
