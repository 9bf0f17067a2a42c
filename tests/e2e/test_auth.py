"""Only the right caller, across the services: a read-only token reads an instance the
provisioner made and may change nothing. The gateway's own auth contract (tokens, scopes,
registration, OIDC, lockout) is tests/contract/test_auth.py."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import unique_name
from tests.support.polling import wait_for_instance
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

FULL = "edfi_admin_api/full_access"
READ = "edfi_admin_api/read_only"


def _is_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


def test_a_read_only_token_reads_and_may_change_nothing(stack: Stack) -> None:
    with stack.client(READ) as reader, stack.client(FULL) as writer:
        made = writer.post(
            "/v2/dbInstances", json={"name": unique_name("Scoped"), "databaseTemplate": "Minimal"}
        ).json()
        wait_for_instance(reader, made["id"])
        assert reader.get("/v2/jobs").status_code == 200
        assert reader.get("/v2/schedules").status_code == 200
        before = reader.get("/v2/dbInstances", params={"limit": 500}).json()
        for r in (
            reader.post("/v2/dbInstances", json={"name": "Nope", "databaseTemplate": "Minimal"}),
            reader.put(f"/v2/dbInstances/{made['id']}", json={"name": "Nope"}),
            reader.delete(f"/v2/dbInstances/{made['id']}"),
            reader.delete(f"/v2/jobs/{made['jobId']}"),
            reader.post("/v2/schedules", json={}),
        ):
            problem = _is_problem(r, 403)
            assert FULL in problem["detail"]
        assert reader.get("/v2/dbInstances", params={"limit": 500}).json() == before
