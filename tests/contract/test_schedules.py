"""Schedules the gateway refuses at its door (moved from tests/e2e/test_schedules.py): a 422
problem naming the field, and no schedule is added."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.contract


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"trigger": {"type": "cron", "cron": "0 0 25 * * ?"}}, "trigger.cron"),
        ({"trigger": {"type": "cron", "cron": "0 0 9 * * MON-FRI", "x": 1}}, "trigger.x"),
        ({"trigger": {"type": "cron", "cron": "0 0 9 * * ?", "timeZone": "Mars/Base"}}, None),
        ({"trigger": {"type": "once", "runAt": "2030-01-01T10:00:00"}}, "trigger.runAt"),
        ({"trigger": {"type": "interval", "intervalSeconds": 0}}, "trigger.intervalSeconds"),
        ({"trigger": {"type": "weekly"}}, "trigger"),
        ({"trigger": {"type": "cron", "cron": "0 0 0 30 2 ?"}}, "trigger"),
        ({"job": {"type": "backup", "parameters": {}}}, "job.type"),
        (
            {
                "job": {
                    "type": "createInstance",
                    "parameters": {"name": "x;DROP", "databaseTemplate": "Minimal"},
                }
            },
            "job.parameters.name",
        ),
        (
            {
                "job": {
                    "type": "createInstance",
                    "parameters": {"name": "ok", "databaseTemplate": "Nope"},
                }
            },
            "job.parameters.databaseTemplate",
        ),
        ({"job": {"type": "deleteInstance", "parameters": {}}}, "job.parameters.id"),
        ({"misfirePolicy": "sometimes"}, "misfirePolicy"),
        ({"name": "   "}, "name"),
        ({"extra": True}, "extra"),
    ],
)
def test_bad_schedules_are_refused_naming_the_field(
    api: httpx.Client, change: dict[str, Any], field: str | None
) -> None:
    body = {
        "name": f"bad {uuid.uuid4().hex[:8]}",
        "job": {"type": "prune", "parameters": {}},
        "trigger": {"type": "cron", "cron": "0 0 9 * * ?"},
    } | change
    before = len(api.get("/v2/schedules", params={"limit": 500}).json())
    r = api.post("/v2/schedules", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["status"] == 422
    if field is not None:
        assert field in problem["errors"], problem
    else:
        assert "trigger.timeZone" in problem["errors"] and "IANA" in problem["detail"]
    assert len(api.get("/v2/schedules", params={"limit": 500}).json()) == before
