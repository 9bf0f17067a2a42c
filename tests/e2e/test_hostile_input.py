"""Hostile input through every door that takes a name: refused with a 4xx problem that names the
field, and nothing changes (no instance, no job, no schedule, no database). The renames aim at
an instance the provisioner made; wrong shapes, NULs and instants at the calendar's edges are
tests/contract/test_hostile_input.py."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import unique_name
from tests.support import pg
from tests.support.hostile import counts, refused
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
    before = counts(admin_database)
    databases = set(pg.databases_like(db_prefix.replace("_", r"\_") + "%"))

    refused(api.post("/v2/dbInstances", json={"name": name, "databaseTemplate": "Minimal"}), "name")
    refused(api.put(f"/v2/dbInstances/{target['id']}", json={"name": name}), "name")
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
        refused(r, "job.parameters.name")
    r = api.post(
        "/v2/schedules",
        json={
            "name": name or " ",
            "job": {"type": "prune"},
            "trigger": {"type": "once", "runAt": "x"},
        },
    )
    assert r.status_code == 422  # a schedule's own name may be any text, but this body is bad

    assert counts(admin_database) == before
    assert set(pg.databases_like(db_prefix.replace("_", r"\_") + "%")) == databases
    assert api.get(f"/v2/dbInstances/{target['id']}").json()["name"] == target["name"]
