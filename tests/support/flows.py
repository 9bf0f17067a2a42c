"""Small flows the end-to-end tests share."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import psycopg

from contracts.messages import InstanceRequested, Operation
from tests.support.polling import wait_for_instance


def create(api: httpx.Client, name: str, template: str = "Minimal") -> dict[str, Any]:
    r = api.post("/v2/dbInstances", json={"name": name, "databaseTemplate": template})
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


def create_completed(api: httpx.Client, name: str) -> dict[str, Any]:
    done, _ = wait_for_instance(api, create(api, name)["id"])
    assert done["status"] == "Completed", done
    return done


def rename(api: httpx.Client, instance_id: int, name: str) -> httpx.Response:
    return api.put(f"/v2/dbInstances/{instance_id}", json={"name": name})


def pending_create(admin_database_url: str, db_prefix: str, name: str) -> InstanceRequested:
    """An accepted create (its instance and job `Pending`, as the gateway leaves them) whose
    command the test sends itself, in whatever form it is testing."""
    job_id = uuid.uuid4()
    database = db_prefix + name.replace(" ", "_")
    with psycopg.connect(admin_database_url, autocommit=True) as c:
        row = c.execute(
            "INSERT INTO edfi_im.dbinstances (name, status, databasetemplate, databasename, "
            "currentjobid) VALUES (%s, 'Pending', 'Minimal', %s, %s) RETURNING id",
            (name, database, job_id),
        ).fetchone()
        assert row is not None
        command = InstanceRequested(
            job_id=job_id,
            instance_id=int(row[0]),
            operation=Operation.CREATE,
            database_name=database,
            database_template="EdFi_Ods_Minimal_Template",
        )
        c.execute(
            "INSERT INTO edfi_im.jobs (id, type, instance_id, status, data, command) "
            "VALUES (%s, 'createInstance', %s, 'Pending', '{}', %s)",
            (job_id, command.instance_id, json.dumps(command.model_dump(mode="json"))),
        )
    return command
