"""Attacks from issue 14 against the running services, each now with the safe outcome.

- Another deployment (or anyone) on the same ODS server holding an advisory lock keyed by an
  instance id alone no longer stalls this system's job; holding this deployment's own key makes
  the job say why it waits, and it goes on once the lock is released.
- A dbo.odsinstances row naming the admin database, on another host, is never imported: the
  reconcile says why, no instance appears, and the admin database is left alone.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from services.admin_db.engine import database_identity
from services.rules import crypto
from services.rules.connection_strings import ods_connection_string
from services.rules.marker import lock_key
from services.runtime.settings import Settings
from tests.conftest import unique_name
from tests.support import pg
from tests.support.flows import create_completed, rename
from tests.support.polling import wait_for_instance

pytestmark = pytest.mark.e2e

# The key the instance lock had before it was scoped: (class, instance id).
UNSCOPED_INSTANCE_CLASS = 0x0ED1F2


def _job(api: httpx.Client, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = api.get(f"/v2/jobs/{job_id}").json()
    return body


def test_an_instance_id_held_by_someone_else_on_the_server_does_not_stall_a_job(
    api: httpx.Client,
) -> None:
    done = create_completed(api, unique_name("Unscoped"))
    with psycopg.connect(pg.SERVER, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", (UNSCOPED_INSTANCE_CLASS, done["id"]))
        assert rename(api, done["id"], unique_name("Unscoped Renamed")).status_code == 202
        renamed, _ = wait_for_instance(api, done["id"], timeout=30)
    assert renamed["status"] == "Completed", renamed


def test_a_job_waiting_for_its_instance_lock_says_who_holds_it_and_then_goes_on(
    api: httpx.Client, settings: Settings
) -> None:
    done = create_completed(api, unique_name("Held"))
    key = lock_key("instance", database_identity(settings.admin_database_url), done["id"])
    with psycopg.connect(pg.SERVER, autocommit=True, application_name="someone-else") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (key,))
        r = rename(api, done["id"], unique_name("Held Renamed"))
        assert r.status_code == 202
        job_id = r.json()["jobId"]
        deadline = time.monotonic() + 30
        while "lock" not in (_job(api, job_id)["progressMessage"] or ""):
            assert time.monotonic() < deadline, _job(api, job_id)
            time.sleep(0.2)
        waiting = _job(api, job_id)
        assert waiting["status"] == "Pending"
        assert f"Waiting for instance {done['id']}'s lock" in waiting["progressMessage"]
        assert "someone-else" in waiting["progressMessage"]
        # It keeps saying so (its heartbeat), so it is never silent while it waits.
        first = waiting["heartbeatAt"]
        while _job(api, job_id)["heartbeatAt"] == first:
            assert time.monotonic() < deadline + 10
            time.sleep(0.2)
    renamed, _ = wait_for_instance(api, done["id"], timeout=30)
    assert renamed["status"] == "Completed", renamed


def test_a_dbo_row_naming_the_admin_database_elsewhere_is_never_imported(
    api: httpx.Client, settings: Settings, admin_database: str, encryption_key: bytes
) -> None:
    forged = ods_connection_string(settings, admin_database).replace(
        "host=127.0.0.1", "host=elsewhere.example.org"
    )
    with psycopg.connect(pg.database_url(admin_database), autocommit=True) as c:
        row = c.execute(
            "INSERT INTO dbo.odsinstances (name, instancetype, connectionstring) "
            "VALUES (%s, 'Forged', %s) RETURNING odsinstanceid",
            (unique_name("Forged"), crypto.encrypt(forged, encryption_key)),
        ).fetchone()
    assert row is not None
    forged_id = int(row[0])
    try:
        run_at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        r = api.post(
            "/v2/schedules",
            json={
                "name": f"reconcile {uuid.uuid4().hex[:8]}",
                "job": {"type": "reconcile", "parameters": {"repair": True}},
                "trigger": {"type": "once", "runAt": run_at},
            },
        )
        assert r.status_code == 201, r.text
        schedule = r.json()["id"]
        deadline = time.monotonic() + 60
        while True:
            jobs = api.get("/v2/jobs", params={"scheduleId": schedule}).json()
            if jobs and jobs[0]["status"] in ("Completed", "Failed"):
                break
            assert time.monotonic() < deadline, jobs
            time.sleep(0.3)
        report = jobs[0]["result"]
        [finding] = [f for f in report["findings"] if f.get("odsInstanceId") == forged_id]
        assert finding["kind"] == "foreignOdsInstance" and finding["repaired"] is False
        assert "elsewhere.example.org" in finding["detail"]
        listed = api.get("/v2/dbInstances", params={"limit": 500}).json()
        assert all(i["odsInstanceId"] != forged_id for i in listed)
        assert pg.exists(admin_database)
        assert api.get("/v2/jobs").status_code == 200  # the admin database is untouched
    finally:
        pg.execute(
            admin_database, f"DELETE FROM dbo.odsinstances WHERE odsinstanceid = {forged_id}"
        )
