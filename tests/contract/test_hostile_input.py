"""Hostile input the gateway refuses at its door (moved from tests/e2e/test_hostile_input.py):
bodies of the wrong shape, a NUL in any free-text field, instants at the calendar's edges; each
a 422 problem naming the field, and nothing changes (no instance, no job, no schedule)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import unique_name
from tests.support.hostile import counts, refused

pytestmark = pytest.mark.contract


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Ok", "databaseTemplate": "Minimal", "unknown": 1},
        {"name": 12, "databaseTemplate": "Minimal"},
        {"name": ["Ok"], "databaseTemplate": "Minimal"},
        {"name": None, "databaseTemplate": "Minimal"},
        {"name": "Ok", "databaseTemplate": {"$ne": ""}},
        [],
        "a string",
    ],
)
def test_wrong_shapes_are_refused_and_change_nothing(
    api: httpx.Client, admin_database: str, body: Any
) -> None:
    before = counts(admin_database)
    r = api.post("/v2/dbInstances", json=body)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert counts(admin_database) == before


NUL = "District\u0000Specific"


def test_a_nul_in_any_free_text_field_is_a_422_naming_it_and_writes_nothing(
    api: httpx.Client, admin_database: str
) -> None:
    """NUL characters gave 500s (PostgreSQL cannot store them): in an instance type (/v2, the
    Admin Console, a schedule's parameters), in a schedule's name, its cron or time zone."""
    before = counts(admin_database)
    create = {"name": unique_name("Nul"), "databaseTemplate": "Minimal", "instanceType": NUL}
    refused(api.post("/v2/dbInstances", json=create), "instanceType")
    refused(
        api.post(
            "/adminconsole/odsInstances", json={"name": unique_name("Nul"), "instanceType": NUL}
        ),
        "instanceType",
    )
    refused(
        api.post(
            "/adminconsole/odsInstances", json={"name": unique_name("Nul"), "tenantName": NUL}
        ),
        "tenantName",
    )
    schedule = {
        "name": unique_name("Nul"),
        "job": {"type": "createInstance", "parameters": create},
        "trigger": {"type": "cron", "cron": "0 0 9 * * ?"},
    }
    refused(api.post("/v2/schedules", json=schedule), "job.parameters.instanceType")
    named = schedule | {"name": "Nightly\u0000", "job": {"type": "prune"}}
    refused(api.post("/v2/schedules", json=named), "name")
    cron = named | {
        "name": unique_name("Nul"),
        "trigger": {"type": "cron", "cron": "0 0 9 *\u0000 * ?"},
    }
    refused(api.post("/v2/schedules", json=cron), "trigger.cron")
    zone = cron | {"trigger": {"type": "cron", "cron": "0 0 9 * * ?", "timeZone": "UTC\u0000"}}
    refused(api.post("/v2/schedules", json=zone), "trigger.timeZone")
    assert counts(admin_database) == before


@pytest.mark.parametrize(
    ("trigger", "field"),
    [
        ({"type": "once", "runAt": "0001-01-01T00:00:00+14:00"}, "trigger.runAt"),
        ({"type": "once", "runAt": "9999-12-31T23:59:59-14:00"}, "trigger.runAt"),
        (
            {"type": "interval", "intervalSeconds": 60, "startAt": "0001-01-01T00:00:00+14:00"},
            "trigger.startAt",
        ),
        (
            {
                "type": "interval",
                "intervalSeconds": 60,
                "startAt": "2027-01-01T00:00:00Z",
                "endAt": "9999-12-31T23:59:59-14:00",
            },
            "trigger.endAt",
        ),
    ],
)
def test_instants_at_the_edges_of_the_calendar_are_a_422_naming_the_field(
    api: httpx.Client, admin_database: str, trigger: dict[str, Any], field: str
) -> None:
    """They overflowed the trigger maths (500)."""
    before = counts(admin_database)
    r = api.post(
        "/v2/schedules",
        json={"name": unique_name("Edge"), "job": {"type": "prune"}, "trigger": trigger},
    )
    refused(r, field)
    assert counts(admin_database) == before
