"""Hostile input through every door that takes a name: refused with a 4xx problem that names the
field, and nothing changes (no instance, no job, no schedule, no database)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import unique_name
from tests.support import pg
from tests.support.polling import wait_for_instance
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

HOSTILE_NAMES = [
    "Robert'); DROP TABLE edfi_im.dbinstances;--",
    'Quote"; DROP DATABASE postgres; --',
    "semi;colon",
    "back`tick",
    "dollar$$quote",
    "percent%s",
    "new\nline",
    "tab\tname",
    "nul\u0000byte",
    "Grаnd Bend",  # Cyrillic а
    "ＧｒａｎｄＢｅｎｄ",  # full-width
    "Grand\u200bBend",  # zero-width space
    "Grand\u202eBend",  # right-to-left override
    "café",
    "🙂",
    "x" * 47,
    "y" * 5000,
    "",
    "   ",
    "../../etc/passwd",
    # Names people could not tell from others: refused rather than normalised.
    "Col A x ",
    "Col  A x",
    "_",
    "   x",
]


def _counts(admin_database: str) -> tuple[int, int, int]:
    return (
        pg.query(admin_database, "SELECT count(*) FROM edfi_im.dbinstances")[0][0],
        pg.query(admin_database, "SELECT count(*) FROM edfi_im.jobs")[0][0],
        pg.query(admin_database, "SELECT count(*) FROM edfi_im.schedules")[0][0],
    )


def _refused(r: httpx.Response, field: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = r.json()
    assert field in problem["errors"], problem


@pytest.fixture(scope="module")
def target(stack: Stack) -> dict[str, Any]:
    """One completed instance the renames aim at."""
    with stack.client() as api:
        made = api.post(
            "/v2/dbInstances", json={"name": unique_name("Target"), "databaseTemplate": "Minimal"}
        ).json()
        return wait_for_instance(api, made["id"])[0]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_hostile_names_are_refused_everywhere_and_change_nothing(
    api: httpx.Client, admin_database: str, db_prefix: str, target: dict[str, Any], name: str
) -> None:
    assert target["status"] == "Completed"
    before = _counts(admin_database)
    databases = set(pg.databases_like(db_prefix.replace("_", r"\_") + "%"))

    _refused(
        api.post("/v2/dbInstances", json={"name": name, "databaseTemplate": "Minimal"}), "name"
    )
    _refused(api.put(f"/v2/dbInstances/{target['id']}", json={"name": name}), "name")
    for job in (
        {"type": "createInstance", "parameters": {"name": name, "databaseTemplate": "Minimal"}},
        {"type": "renameInstance", "parameters": {"id": target["id"], "name": name}},
    ):
        r = api.post(
            "/v2/schedules",
            json={
                "name": unique_name("Hostile"),
                "job": job,
                "trigger": {"type": "cron", "cron": "0 0 9 * * ?"},
            },
        )
        _refused(r, "job.parameters.name")
    r = api.post(
        "/v2/schedules",
        json={
            "name": name or " ",
            "job": {"type": "prune"},
            "trigger": {"type": "once", "runAt": "x"},
        },
    )
    assert r.status_code == 422  # a schedule's own name may be any text, but this body is bad

    assert _counts(admin_database) == before
    assert set(pg.databases_like(db_prefix.replace("_", r"\_") + "%")) == databases
    assert api.get(f"/v2/dbInstances/{target['id']}").json()["name"] == target["name"]


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
    before = _counts(admin_database)
    r = api.post("/v2/dbInstances", json=body)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert _counts(admin_database) == before


NUL = "District\u0000Specific"


def test_a_nul_in_any_free_text_field_is_a_422_naming_it_and_writes_nothing(
    api: httpx.Client, admin_database: str
) -> None:
    """NUL characters gave 500s (PostgreSQL cannot store them): in an instance type (/v2, the
    Admin Console, a schedule's parameters), in a schedule's name, its cron or time zone."""
    before = _counts(admin_database)
    create = {"name": unique_name("Nul"), "databaseTemplate": "Minimal", "instanceType": NUL}
    _refused(api.post("/v2/dbInstances", json=create), "instanceType")
    _refused(
        api.post(
            "/adminconsole/odsInstances", json={"name": unique_name("Nul"), "instanceType": NUL}
        ),
        "instanceType",
    )
    _refused(
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
    _refused(api.post("/v2/schedules", json=schedule), "job.parameters.instanceType")
    named = schedule | {"name": "Nightly\u0000", "job": {"type": "prune"}}
    _refused(api.post("/v2/schedules", json=named), "name")
    cron = named | {
        "name": unique_name("Nul"),
        "trigger": {"type": "cron", "cron": "0 0 9 *\u0000 * ?"},
    }
    _refused(api.post("/v2/schedules", json=cron), "trigger.cron")
    zone = cron | {"trigger": {"type": "cron", "cron": "0 0 9 * * ?", "timeZone": "UTC\u0000"}}
    _refused(api.post("/v2/schedules", json=zone), "trigger.timeZone")
    assert _counts(admin_database) == before


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
    before = _counts(admin_database)
    r = api.post(
        "/v2/schedules",
        json={"name": unique_name("Edge"), "job": {"type": "prune"}, "trigger": trigger},
    )
    _refused(r, field)
    assert _counts(admin_database) == before
