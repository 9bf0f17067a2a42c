"""Creates the gateway refuses, at its door (moved from tests/e2e/test_create.py): bad input names
the field and writes nothing, a body that is not JSON, a taken name whatever its case or spacing,
unknown ids. The create that completes is tests/e2e/test_create.py."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import unique_name
from tests.support import pg

pytestmark = pytest.mark.contract


def _create(
    api: httpx.Client, name: str, template: str = "Minimal", **headers: str
) -> httpx.Response:
    return api.post(
        "/v2/dbInstances", json={"name": name, "databaseTemplate": template}, headers=headers
    )


def _count_instances(admin_database: str) -> int:
    return int(pg.query(admin_database, "SELECT count(*) FROM edfi_im.dbinstances")[0][0])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "databaseTemplate": "Minimal"}, "name"),
        ({"name": "x" * 47, "databaseTemplate": "Minimal"}, "name"),
        ({"name": "Robert'); DROP TABLE x;--", "databaseTemplate": "Minimal"}, "name"),
        ({"name": "Grаnd Bend", "databaseTemplate": "Minimal"}, "name"),  # Cyrillic 'а'
        ({"name": "Grand-Bend", "databaseTemplate": "Minimal"}, "name"),
        ({"name": 5, "databaseTemplate": "Minimal"}, "name"),
        ({"databaseTemplate": "Minimal"}, "name"),
        ({"name": "Fine"}, "databaseTemplate"),
        ({"name": "Fine", "databaseTemplate": "Huge"}, "databaseTemplate"),
        ({"name": "Fine", "databaseTemplate": "Minimal", "extra": 1}, "extra"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_writes_nothing(
    api: httpx.Client, admin_database: str, body: dict[str, Any], field: str
) -> None:
    before = _count_instances(admin_database)
    r = api.post("/v2/dbInstances", json=body)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 422
    assert field in problem["errors"]
    assert field in problem["detail"]
    assert _count_instances(admin_database) == before


def test_a_body_that_is_not_json_is_a_problem(api: httpx.Client) -> None:
    r = api.post(
        "/v2/dbInstances", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"


def test_a_taken_name_is_a_conflict_whatever_its_case_or_spacing(
    api: httpx.Client, admin_database: str
) -> None:
    name = unique_name("Taken")
    first = _create(api, name)
    assert first.status_code == 202
    before = _count_instances(admin_database)
    for other in (name, name.upper(), name.replace(" ", "_")):
        r = _create(api, other)
        assert r.status_code == 409, other
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["conflictingInstanceId"] == first.json()["id"]
        assert "name" in r.json()["errors"]
    assert _count_instances(admin_database) == before


def test_unknown_ids_are_not_found(api: httpx.Client) -> None:
    r = api.get("/v2/dbInstances/999999999")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert api.get(f"/v2/jobs/{uuid.uuid4()}").status_code == 404
    assert api.get("/v2/jobs/not-a-uuid").status_code == 422
