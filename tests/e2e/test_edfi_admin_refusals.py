"""What Ed-Fi's real EdFi_Admin refuses, end to end: an outcome its constraints refuse ends the
job and the instance in a failure status with the reason at once (never a retry loop), the
event waits in the dead letters, and a requeue after the fix completes it; a rename keeps every
connection string that was the instance's own true."""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.rules import crypto
from tests.conftest import unique_name
from tests.support import pg
from tests.support.flows import create_completed, rename
from tests.support.polling import wait_for_instance
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def _dead_letters(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return stack.cli("dead-letters", *args)


def _dead_event_of(stack: Stack, job_id: str) -> dict[str, Any]:
    listed = _dead_letters(stack, "list", "--queue", "status.dead")
    assert listed.returncode == 0, listed.stderr
    for line in listed.stdout.splitlines():
        if line.startswith("{") and job_id in line:
            letter: dict[str, Any] = json.loads(line)
            return letter
    raise AssertionError(f"no dead-lettered event of job {job_id}:\n{listed.stdout}")


def _refused_writes(stack: Stack, sqlstate: str) -> float:
    """The status service's count of admin-database writes refused with this SQLSTATE."""
    text = httpx.get(f"http://127.0.0.1:{stack.health_ports['status']}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "edfi_im_admin_writes_refused_total"
        and sample.labels == {"service": "status", "sqlstate": sqlstate}
    )


def _job(api: httpx.Client, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = api.get(f"/v2/jobs/{job_id}").json()
    return body


def test_a_create_whose_dbo_row_is_refused_fails_at_once_and_completes_after_a_requeue(
    stack: Stack, api: httpx.Client, admin_database: str
) -> None:
    """Ed-Fi's unique index on dbo.odsinstances (name, instancetype) refuses the row: the job
    fails with the reason within the test's wait (no retry loop), the database stays marked as
    the instance's, and once the clash is gone a requeue of the event completes the create."""
    name = unique_name("Clash")
    with psycopg.connect(pg.database_url(admin_database), autocommit=True) as c:
        row = c.execute(
            "INSERT INTO dbo.odsinstances (name, instancetype) VALUES (%s, 'DistrictSpecific') "
            "RETURNING odsinstanceid",
            (name,),
        ).fetchone()
        assert row is not None
        squatter = int(row[0])
    r = api.post(
        "/v2/dbInstances",
        json={"name": name, "databaseTemplate": "Minimal", "instanceType": "DistrictSpecific"},
    )
    assert r.status_code == 202, r.text
    created = r.json()
    failed, seen = wait_for_instance(api, created["id"], timeout=30)
    assert failed["status"] == "Error", seen
    assert "ux_name_instancetype" in failed["error"] and "unique index" in failed["error"]
    assert "marked as this system's" in failed["error"]
    job = _job(api, created["jobId"])
    assert job["status"] == "Failed" and job["error"] == failed["error"]
    assert pg.exists(created["databaseName"])  # kept, and marked: a delete can drop it
    assert f'"instanceId": {created["id"]}' in (pg.comment(created["databaseName"]) or "")
    letter = _dead_event_of(stack, created["jobId"])
    assert letter["message_id"] in failed["error"]  # the requeue command is in the reason
    assert "InstanceCreated" in (letter["type"] or "")
    assert stack.logged_since_start("status", "event could not be applied; dead-lettered")
    assert _refused_writes(stack, "23505") >= 1  # counted: edfi_im_admin_writes_refused_total

    # The fix: the clashing row goes; the requeued event then completes the create.
    pg.execute(admin_database, f"DELETE FROM dbo.odsinstances WHERE odsinstanceid = {squatter}")
    done = _dead_letters(stack, "requeue", letter["message_id"], "--queue", "status.dead")
    assert done.returncode == 0, done.stderr
    assert "re-opened" in done.stdout
    completed, _ = wait_for_instance(api, created["id"], timeout=30)
    assert completed["status"] == "Completed", completed
    assert completed["error"] is None
    assert _job(api, created["jobId"])["status"] == "Completed"
    rows = pg.query(
        admin_database,
        "SELECT name, instancetype FROM dbo.odsinstances WHERE odsinstanceid = %s",
        (completed["odsInstanceId"],),
    )
    assert rows == [(name, "DistrictSpecific")]


def test_a_delete_whose_dbo_rows_are_still_referenced_fails_and_succeeds_when_asked_again(
    api: httpx.Client, admin_database: str
) -> None:
    """A table someone else keeps in EdFi_Admin references the instance's dbo row: the database
    is dropped, the dbo delete is refused, the instance is Delete_Failed saying why (at once);
    with the reference gone, a second delete removes the rows and ends Deleted."""
    done = create_completed(api, unique_name("Referenced"))
    table = f"partner_links_{uuid.uuid4().hex[:8]}"
    pg.execute(
        admin_database,
        f"CREATE TABLE public.{table} (odsinstanceid int NOT NULL "
        "REFERENCES dbo.odsinstances (odsinstanceid))",
    )
    try:
        pg.execute(admin_database, f"INSERT INTO public.{table} VALUES ({done['odsInstanceId']})")
        assert api.delete(f"/v2/dbInstances/{done['id']}").status_code == 202
        failed, seen = wait_for_instance(api, done["id"], timeout=30)
        assert failed["status"] == "Delete_Failed", seen
        assert table in failed["error"] and "foreign key" in failed["error"]
        assert "Delete the instance again" in failed["error"]
        assert not pg.exists(done["databaseName"])  # what happened on the server is said
        assert "was dropped from the ODS server" in failed["error"]
        assert pg.query(
            admin_database,
            "SELECT count(*) FROM dbo.odsinstances WHERE odsinstanceid = %s",
            (done["odsInstanceId"],),
        ) == [(1,)]

        pg.execute(admin_database, f"DELETE FROM public.{table}")
        assert api.delete(f"/v2/dbInstances/{done['id']}").status_code == 202
        deleted, _ = wait_for_instance(api, done["id"], timeout=30)
        assert deleted["status"] == "Deleted", deleted
        assert pg.query(
            admin_database,
            "SELECT count(*) FROM dbo.odsinstances WHERE odsinstanceid = %s",
            (done["odsInstanceId"],),
        ) == [(0,)]
    finally:
        pg.execute(admin_database, f"DROP TABLE IF EXISTS public.{table}")


def test_a_refused_rename_records_the_database_the_server_has(
    api: httpx.Client, admin_database: str
) -> None:
    """The new name clashes with another dbo row of the same type: the database was renamed on
    the server, so the instance (Rename_Failed) records the new database name, and a delete
    then drops that database, not nothing."""
    first = api.post(
        "/v2/dbInstances",
        json={
            "name": unique_name("Renamed"),
            "databaseTemplate": "Minimal",
            "instanceType": "Sandbox",
        },
    ).json()
    done, _ = wait_for_instance(api, first["id"])
    assert done["status"] == "Completed", done
    new_name = unique_name("Taken")
    pg.execute(
        admin_database,
        f"INSERT INTO dbo.odsinstances (name, instancetype) VALUES ('{new_name}', 'Sandbox')",
    )
    r = rename(api, done["id"], new_name)
    assert r.status_code == 202, r.text
    failed, _ = wait_for_instance(api, done["id"], timeout=30)
    assert failed["status"] == "Rename_Failed", failed
    assert "ux_name_instancetype" in failed["error"]
    new_database = failed["databaseName"]
    assert new_database != done["databaseName"]
    assert pg.exists(new_database) and not pg.exists(done["databaseName"])

    assert api.delete(f"/v2/dbInstances/{done['id']}").status_code == 202
    deleted, _ = wait_for_instance(api, done["id"], timeout=30)
    assert deleted["status"] == "Deleted", deleted
    assert not pg.exists(new_database)


def test_a_rename_repoints_the_derivatives_that_held_the_instances_own_connection_string(
    api: httpx.Client, admin_database: str, encryption_key: bytes
) -> None:
    r = api.post(
        "/v2/dbInstances",
        json={
            "name": unique_name("Replicated"),
            "databaseTemplate": "Minimal",
            "odsInstanceDerivatives": [{"derivativeType": "ReadReplica"}],
        },
    )
    done, _ = wait_for_instance(api, r.json()["id"])
    assert done["status"] == "Completed", done
    ods_id = done["odsInstanceId"]
    replica = "host=replica.example.org;port=5432;username=edfi;database=EdFi_Ods_Replica"
    with psycopg.connect(pg.database_url(admin_database), autocommit=True) as c:
        c.execute(
            "INSERT INTO dbo.odsinstancederivatives (odsinstance_odsinstanceid, derivativetype, "
            "connectionstring) VALUES (%s, 'Snapshot', %s)",
            (ods_id, crypto.encrypt(replica, encryption_key)),
        )

    new_name = unique_name("Replicated Again")
    assert rename(api, done["id"], new_name).status_code == 202
    renamed, _ = wait_for_instance(api, done["id"])
    assert renamed["status"] == "Completed", renamed

    def plain(query: str) -> dict[str, str]:
        rows = pg.query(admin_database, query, (ods_id,))
        return {k: crypto.decrypt(v, encryption_key) for k, v in rows}

    own = plain(
        "SELECT 'instance', connectionstring FROM dbo.odsinstances WHERE odsinstanceid = %s"
    )["instance"]
    derivatives = plain(
        "SELECT derivativetype, connectionstring FROM dbo.odsinstancederivatives "
        "WHERE odsinstance_odsinstanceid = %s"
    )
    assert f"database={renamed['databaseName']}" in own
    assert derivatives["ReadReplica"] == own
    assert derivatives["Snapshot"] == replica
