"""A status replica that starts imports the dbo.odsinstances rows other tools made, and the
imported instance is manageable through the API."""

from __future__ import annotations

import subprocess
import time
import uuid

import httpx
import psycopg
import pytest

from services.rules import crypto
from services.rules.connection_strings import ods_connection_string
from services.runtime.settings import Settings
from services.runtime.topology import STATUS_QUEUE
from tests.support import pg, rabbit
from tests.support.flows import create_completed
from tests.support.polling import wait_for_instance
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def test_a_starting_status_replica_imports_foreign_rows_once_and_they_can_be_renamed(
    api: httpx.Client,
    stack: Stack,
    settings: Settings,
    admin_database: str,
    db_prefix: str,
    encryption_key: bytes,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    database = f"{db_prefix}legacy_{suffix}"
    pg.create(database)  # made by another Ed-Fi tool: no mark of ours
    stored = crypto.encrypt(ods_connection_string(settings, database), encryption_key)
    with psycopg.connect(pg.database_url(admin_database), autocommit=True) as c:
        row = c.execute(
            "INSERT INTO dbo.odsinstances (name, instancetype, connectionstring) "
            "VALUES (%s, 'District', %s) RETURNING odsinstanceid",
            (f"Legacy {suffix}", stored),
        ).fetchone()
    assert row is not None
    ods_id = int(row[0])

    for replica in ("status-2", "status-3"):
        stack.start(replica, "status")
    try:
        stack.wait_ready()
        deadline = time.monotonic() + 60
        while rabbit.queue(stack.vhost, STATUS_QUEUE).get("consumers", 0) < 3:
            assert time.monotonic() < deadline, "the status replicas did not start consuming"
            time.sleep(0.2)
        listed: list[dict[str, object]] = []
        for _ in range(100):
            listed = [
                i
                for i in api.get("/v2/dbInstances", params={"limit": 500}).json()
                if i["odsInstanceId"] == ods_id
            ]
            if listed:
                break
            time.sleep(0.1)
    finally:
        for replica in ("status-2", "status-3"):
            assert stack.stop(replica) == 0
    assert len(listed) == 1
    imported = listed[0]
    assert imported["status"] == "Completed"
    assert imported["imported"] is True
    assert imported["databaseName"] == database
    count = pg.query(
        admin_database,
        "SELECT count(*) FROM edfi_im.dbinstances WHERE odsinstanceid = %s",
        (ods_id,),
    )
    assert count == [(1,)]

    # Made by another tool: renaming it is refused (and changes nothing) until it is adopted.
    iid = int(str(imported["id"]))
    new_name = f"Legacy Renamed {suffix}"
    assert api.put(f"/v2/dbInstances/{iid}", json={"name": new_name}).status_code == 202
    refused, _ = wait_for_instance(api, iid)
    assert refused["status"] == "Rename_Failed" and "adopt it first" in refused["error"]
    assert pg.exists(database) and pg.comment(database) is None

    adopted = stack.cli("adopt", str(iid))
    assert adopted.returncode == 0, adopted.stderr
    assert "adopted" in adopted.stdout
    assert f'"instanceId": {iid}' in (pg.comment(database) or "")

    r = api.put(f"/v2/dbInstances/{iid}", json={"name": new_name})
    assert r.status_code == 202
    done, _ = wait_for_instance(api, iid)
    assert done["status"] == "Completed", done
    assert pg.exists(done["databaseName"])
    assert not pg.exists(database)
    # Now this system's: a delete drops it.
    assert api.delete(f"/v2/dbInstances/{iid}").status_code == 202
    deleted, _ = wait_for_instance(api, iid)
    assert deleted["status"] == "Deleted", deleted
    assert not pg.exists(done["databaseName"])


def test_adopt_says_what_it_cannot_do(api: httpx.Client, stack: Stack) -> None:
    """Adopting an instance that does not exist is refused (exit 1); one whose database this
    system made is already its own (nothing is written)."""

    def adopt(*args: str) -> subprocess.CompletedProcess[str]:
        return stack.cli("adopt", *args)

    missing = adopt("2147483000")
    assert missing.returncode == 1 and "no live instance" in missing.stderr
    made = create_completed(api, f"Made Here {uuid.uuid4().hex[:8]}")
    before = pg.comment(made["databaseName"])
    own = adopt(str(made["id"]))
    assert own.returncode == 0 and "already instance" in own.stdout
    assert pg.comment(made["databaseName"]) == before
