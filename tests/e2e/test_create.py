"""End to end: gateway → outbox → RabbitMQ → provisioner → status, checked over HTTP, in the
admin database and on the database server (invariants 1, 5 and 6). The creates the gateway
refuses at its door are tests/contract/test_create.py."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from services.rules import crypto
from services.rules.connection_strings import parse_connection_string
from tests.conftest import unique_name
from tests.support import pg
from tests.support.polling import wait_for_instance
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def _create(
    api: httpx.Client, name: str, template: str = "Minimal", **headers: str
) -> httpx.Response:
    return api.post(
        "/v2/dbInstances", json={"name": name, "databaseTemplate": template}, headers=headers
    )


def _stored_connection_string(admin_database: str, ods_instance_id: int) -> str:
    rows = pg.query(
        admin_database,
        "SELECT connectionstring, name FROM dbo.odsinstances WHERE odsinstanceid = %s",
        (ods_instance_id,),
    )
    assert len(rows) == 1
    return str(rows[0][0])


def _connect(conn_str: str) -> psycopg.Connection[tuple[Any, ...]]:
    parts = parse_connection_string(conn_str)
    return psycopg.connect(
        host=parts["host"],
        port=int(parts["port"]),
        user=parts["username"],
        password=parts.get("password"),
        dbname=parts["database"],
    )


def test_create_is_accepted_at_once_and_completes_with_a_working_connection_string(
    api: httpx.Client, admin_database: str, db_prefix: str, encryption_key: bytes
) -> None:
    name = unique_name("Grand Bend")
    r = _create(api, name)
    assert r.status_code == 202
    body = r.json()
    assert r.headers["location"] == f"/v2/dbInstances/{body['id']}"
    assert body["status"] == "Pending"
    assert body["name"] == name
    assert body["databaseTemplate"] == "Minimal"
    assert body["databaseName"] == db_prefix + name.replace(" ", "_")
    assert uuid.UUID(body["jobId"])
    assert body["odsInstanceId"] is None

    done, seen = wait_for_instance(api, body["id"])
    assert seen[0] in {"Pending", "InProgress"}
    assert done["status"] == "Completed", done
    assert done["odsInstanceId"] is not None
    assert done["lastModifiedDate"] and done["lastRefreshed"]

    job = api.get(f"/v2/jobs/{body['jobId']}").json()
    assert job["status"] == "Completed"
    assert job["type"] == "createInstance"
    assert job["instanceId"] == body["id"]
    assert job["attempts"] >= 1
    assert job["progressPercent"] == 100
    assert job["startedAt"] and job["finishedAt"] and job["createdAt"]
    assert job["error"] is None

    assert pg.exists(body["databaseName"])
    stored = _stored_connection_string(admin_database, done["odsInstanceId"])
    assert len(stored.split("|")) == 3
    plain = crypto.decrypt(stored, encryption_key)
    assert body["databaseName"] not in stored  # stored encrypted, not in clear
    with _connect(plain) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
        assert row == (body["databaseName"],)
        orgs = conn.execute("SELECT nameofinstitution FROM edfi.educationorganization").fetchall()
        assert orgs == [("Grand Bend ISD",)]


def test_the_sample_template_gives_a_populated_database(api: httpx.Client) -> None:
    r = _create(api, unique_name("Sample"), template="Sample")
    assert r.status_code == 202
    done, _ = wait_for_instance(api, r.json()["id"])
    assert done["status"] == "Completed", done
    rows = pg.query(done["databaseName"], "SELECT count(*) FROM edfi.student")
    assert rows[0][0] >= 10_000


def test_listing_pages_and_filters(api: httpx.Client) -> None:
    ids = [_create(api, unique_name("Page")).json()["id"] for _ in range(3)]
    for i in ids:
        wait_for_instance(api, i)
    everything = api.get("/v2/dbInstances", params={"limit": 500}).json()
    all_ids = [i["id"] for i in everything]
    assert set(ids) <= set(all_ids)
    assert all_ids == sorted(all_ids)
    page = api.get("/v2/dbInstances", params={"offset": 1, "limit": 2}).json()
    assert [i["id"] for i in page] == all_ids[1:3]
    completed = api.get("/v2/dbInstances", params={"status": "Completed", "limit": 500}).json()
    assert completed and all(i["status"] == "Completed" for i in completed)
    bad = api.get("/v2/dbInstances", params={"status": "Bogus"})
    assert bad.status_code == 422 and "status" in bad.json()["errors"]
    assert api.get("/v2/dbInstances", params={"limit": 0}).status_code == 422
    assert api.get("/v2/dbInstances", params={"limit": 501}).status_code == 422
    jobs = api.get("/v2/jobs", params={"instanceId": ids[0]}).json()
    assert [j["instanceId"] for j in jobs] == [ids[0]]


def test_a_foreign_database_with_the_same_name_ends_in_error_and_survives(
    api: httpx.Client, db_prefix: str
) -> None:
    name = unique_name("Foreign")
    database = db_prefix + name.replace(" ", "_")
    pg.create(database, comment_text="made by hand")
    r = _create(api, name)
    done, _ = wait_for_instance(api, r.json()["id"])
    assert done["status"] == "Error"
    assert database in done["error"] and "already exists" in done["error"]
    job = api.get(f"/v2/jobs/{r.json()['jobId']}").json()
    assert job["status"] == "Failed" and job["error"] == done["error"]
    assert pg.comment(database) == "made by hand"


def _json_lines(path: Any) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def test_logs_carry_service_job_instance_and_correlation_ids(
    api: httpx.Client, stack: Stack
) -> None:
    correlation = f"corr-{uuid.uuid4().hex[:8]}"
    r = _create(api, unique_name("Logged"), **{"X-Correlation-ID": correlation})
    assert r.headers["x-correlation-id"] == correlation
    body = r.json()
    wait_for_instance(api, body["id"])
    for service in ("gateway", "provisioner", "status"):
        lines = _json_lines(stack.log(service))
        assert lines, service
        assert all("service" in line and "level" in line for line in lines), service
        mine = [line for line in lines if line.get("correlation_id") == correlation]
        assert mine, f"{service} logged nothing with the request's correlation id"
        if service != "gateway":
            assert all(line["job_id"] == body["jobId"] for line in mine)
            assert all(line["instance_id"] == body["id"] for line in mine)
