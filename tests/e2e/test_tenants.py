"""Tenants, as Ed-Fi Admin API 2 has them: the `tenant` header picks the tenant's admin database
and ODS settings; its commands and events name it; the services act on that tenant only; a caller
limited to some tenants finds the others' instances, jobs and schedules do not exist (404).

A stack of its own (own vhost) with two tenants, each with its own admin database and database
name pattern, on the one local PostgreSQL server; the clients live in the run's admin database.
What a multi-tenant gateway answers at its door (the header, unknown tenants, limited and
forged claims that need no provisioned instance, the listing, the information endpoint, the
gateway's own flag on a job nobody takes) is tests/contract/test_tenants.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from contracts.messages import InstanceRequested, Operation, message_type
from services.rules.connection_strings import parse_connection_string
from services.rules.crypto import decrypt
from services.rules.marker import Marker
from services.runtime.publisher import ConfirmingPublisher
from services.runtime.topology import PROVISIONER_DEAD_QUEUE, REQUESTS_EXCHANGE, declare_topology
from tests.conftest import unique_name
from tests.support import forked, pg, rabbit
from tests.support.flows import create
from tests.support.polling import problem as _problem
from tests.support.polling import until as _until
from tests.support.polling import wait_for_instance
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

A, B = "district-a", "District-B"
B_SERVER_HOST = "ods-b.example.org"
GOOD_SECRET = "Correct-Horse-Battery-Staple-2027!"


@dataclass
class Tenants:
    stack: Stack
    admin: dict[str, str]  # tenant -> its admin database
    prefix: dict[str, str]  # tenant -> its ODS database-name prefix
    key: bytes

    def api(self, tenant: str | None, scope: str = "edfi_admin_api/full_access") -> httpx.Client:
        return self.stack.client(scope, tenant=tenant)


@pytest.fixture(scope="module")
def tenants(
    run_id: str,
    db_prefix: str,
    settings_env: dict[str, str],
    encryption_key: bytes,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Tenants]:
    vhost = f"edfi_im_test_{run_id}_tenants"
    admin = {A: f"edfi_admin_test_{run_id}_a", B: f"edfi_admin_test_{run_id}_b"}
    prefix = {A: f"{db_prefix}A_", B: f"{db_prefix}B_"}
    config = {
        A: {
            "admin_database_url": pg.database_url(admin[A]),
            "database_name_pattern": prefix[A] + "{name}",
        },
        B: {
            "admin_database_url": pg.database_url(admin[B]),
            "database_name_pattern": prefix[B] + "{name}",
            # Tenant B offers only the Minimal template, and its ODS/API reaches the server by
            # another host name: both must show in what B's instances get.
            "templates": {"Minimal": "EdFi_Ods_Minimal_Template"},
            "ods_connection_string_template": (
                f"host={B_SERVER_HOST};port=5432;username=postgres;database={{database}}"
            ),
        },
    }
    env = {
        **settings_env,
        "EDFI_IM_RABBITMQ_URL": rabbit.amqp_url(vhost),
        "EDFI_IM_TENANTS": json.dumps(config),
    }
    rabbit.create_vhost(vhost)
    shards = int(env["EDFI_IM_SHARD_COUNT"])
    asyncio.run(declare_topology(env["EDFI_IM_RABBITMQ_URL"], shards, 20))
    # Each tenant's admin database is an EdFi_Admin (Ed-Fi's dbo tables); `edfi-im migrate`
    # migrates every one of them.
    for database in admin.values():
        pg.edfi_admin(database, migrated=False)
    migrated = forked.cli(["migrate"], {**os.environ, **env})
    assert migrated.returncode == 0, migrated.stderr
    stack = Stack(
        env=env,
        log_dir=Path(tmp_path_factory.mktemp("tenant-logs")),
        vhost=vhost,
        shard_count=shards,
    )
    for name in ("status", "provisioner", "scheduler", "gateway"):
        stack.start(name)
    try:
        stack.wait_ready()
        yield Tenants(stack, admin, prefix, encryption_key)
    finally:
        stack.stop_all()
        rabbit.delete_vhost(vhost)
        for database in admin.values():
            pg.drop_later(database)


def _completed(api: httpx.Client, instance_id: int) -> dict[str, Any]:
    done, seen = wait_for_instance(api, instance_id)
    assert done["status"] == "Completed", (done, seen)
    return done


def _names(api: httpx.Client) -> set[str]:
    r = api.get("/v2/dbInstances", params={"limit": 500})
    assert r.status_code == 200, r.text
    return {i["name"] for i in r.json()}


def _ods_rows(t: Tenants, tenant: str) -> dict[str, str]:
    """dbo.odsinstances of the tenant's admin database: name -> decrypted connection string."""
    rows = pg.query(t.admin[tenant], "SELECT name, connectionstring FROM dbo.odsinstances")
    return {name: decrypt(cs, t.key) for name, cs in rows}


# --- the header ---------------------------------------------------------------------------------


# --- each tenant in its own place ----------------------------------------------------------------


def test_one_name_in_two_tenants_is_two_instances_each_in_its_own_databases(
    tenants: Tenants,
) -> None:
    name = unique_name("Shared")
    with tenants.api(A) as api_a, tenants.api(B) as api_b:
        # The same name is free in each tenant: no conflict across them.
        made = {A: create(api_a, name), B: create(api_b, name)}
        done = {A: _completed(api_a, made[A]["id"]), B: _completed(api_b, made[B]["id"])}
        for t in (A, B):
            database = done[t]["databaseName"]
            assert database.startswith(tenants.prefix[t]), database
            assert pg.exists(database)
            # The database is marked for this tenant's instance, not just an instance number.
            marker = Marker.parse(pg.comment(database))
            assert marker is not None and marker.names(t, made[t]["id"])
            # The instance and its dbo row are in this tenant's admin database only.
            rows = _ods_rows(tenants, t)
            assert parse_connection_string(rows[name])["database"] == database
            other = B if t == A else A
            other_db = done[other]["databaseName"]
            assert all(parse_connection_string(cs)["database"] != other_db for cs in rows.values())
            # Its command named the tenant, in the job row and in the outbox.
            [(command_tenant, outbox_tenants)] = pg.query(
                tenants.admin[t],
                "SELECT j.command->>'tenant', (SELECT array_agg(DISTINCT o.body->>'tenant') "
                "FROM edfi_im.outbox o) FROM edfi_im.jobs j WHERE j.id = %s",
                (uuid.UUID(done[t]["jobId"]),),
            )
            assert command_tenant == t and outbox_tenants == [t]
        # Each tenant's connection strings come from its own settings.
        assert parse_connection_string(_ods_rows(tenants, B)[name])["host"] == B_SERVER_HOST
        assert parse_connection_string(_ods_rows(tenants, A)[name])["host"] != B_SERVER_HOST

        # Rename in B, delete in A: each acts on its own tenant's database only.
        new_name = unique_name("Renamed")
        r = api_b.put(f"/v2/dbInstances/{made[B]['id']}", json={"name": new_name})
        assert r.status_code == 202, r.text
        renamed = _completed(api_b, made[B]["id"])
        assert renamed["databaseName"].startswith(tenants.prefix[B])
        assert new_name in _ods_rows(tenants, B) and name not in _ods_rows(tenants, B)
        assert api_a.delete(f"/v2/dbInstances/{made[A]['id']}").status_code == 202
        deleted, _ = wait_for_instance(api_a, made[A]["id"])
        assert deleted["status"] == "Deleted"
        assert not pg.exists(done[A]["databaseName"])
        assert pg.exists(renamed["databaseName"])
        assert name not in _ods_rows(tenants, A)
        assert new_name not in _names(api_a)


def test_a_tenant_offers_only_its_own_templates(tenants: Tenants) -> None:
    with tenants.api(B) as api_b:
        r = api_b.post(
            "/v2/dbInstances", json={"name": unique_name("Sample"), "databaseTemplate": "Sample"}
        )
        body = _problem(r, 422)
        assert list(body["errors"]) == ["databaseTemplate"]
        assert "Minimal" in body["errors"]["databaseTemplate"][0]
    with tenants.api(A) as api_a:
        # A has the top-level templates, Sample included.
        made = create(api_a, unique_name("Sample"), template="Sample")
        assert _completed(api_a, made["id"])["databaseTemplate"] == "Sample"


# --- a caller limited to tenants -----------------------------------------------------------------


def _limited_client(t: Tenants, allowed: str) -> httpx.Client:
    token = t.stack.new_token(tenants=allowed)
    assert jwt.decode(token, options={"verify_signature": False})["tenants"] == [allowed]
    return httpx.Client(
        base_url=t.stack.url, timeout=10, headers={"Authorization": f"Bearer {token}"}
    )


def test_a_client_limited_to_a_tenant_finds_nothing_of_another(tenants: Tenants) -> None:
    with tenants.api(B) as api_b:
        theirs = create(api_b, unique_name("Theirs"))
        r = api_b.post(
            "/v2/schedules",
            json={
                "name": f"theirs {uuid.uuid4().hex[:8]}",
                "job": {"type": "prune", "parameters": {}},
                "trigger": {"type": "cron", "cron": "0 0 3 * * ?", "timeZone": "UTC"},
            },
        )
        assert r.status_code == 201, r.text
        schedule = r.json()
        _completed(api_b, theirs["id"])
        before = api_b.get("/v2/dbInstances", params={"limit": 500}).json()

    with _limited_client(tenants, A) as limited:
        b = {"tenant": B}
        unknown = _problem(limited.get("/v2/dbInstances", headers={"tenant": "district-z"}), 404)
        refusals = [
            limited.get("/v2/dbInstances", headers=b),
            limited.get(f"/v2/dbInstances/{theirs['id']}", headers=b),
            limited.put(f"/v2/dbInstances/{theirs['id']}", json={"name": "Mine"}, headers=b),
            limited.delete(f"/v2/dbInstances/{theirs['id']}", headers=b),
            limited.get("/v2/jobs", headers=b),
            limited.get(f"/v2/jobs/{theirs['jobId']}", headers=b),
            limited.delete(f"/v2/jobs/{theirs['jobId']}", headers=b),
            limited.get("/v2/schedules", headers=b),
            limited.get(f"/v2/schedules/{schedule['id']}", headers=b),
            limited.post(f"/v2/schedules/{schedule['id']}/pause", headers=b),
            limited.post(
                "/v2/dbInstances",
                json={"name": unique_name("Mine"), "databaseTemplate": "Minimal"},
                headers=b,
            ),
        ]
        for r in refusals:
            body = _problem(r, 404)
            # Exactly what a tenant that does not exist gets: nothing says B is there.
            assert body["title"] == unknown["title"]
            assert body["detail"] == unknown["detail"].replace("district-z", B)
        # Its own tenant works.
        assert limited.get("/v2/dbInstances", headers={"tenant": A}).status_code == 200

    with tenants.api(B) as api_b:
        # Nothing of B changed.
        assert api_b.get("/v2/dbInstances", params={"limit": 500}).json() == before
        assert api_b.get(f"/v2/schedules/{schedule['id']}").json()["state"] == "Normal"


def _forged(tenants: Tenants, claim: object) -> httpx.Client:
    """A client whose token is signed with the gateway's own key (so only its claims are under
    test) and carries `tenants: claim`."""
    now = int(time.time())
    claims = {
        "iss": "edfi-instance-manager",
        "aud": "edfi-instance-manager",
        "sub": "forger",
        "client_id": "forger",
        "scope": "edfi_admin_api/full_access",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "tenants": claim,
    }
    key = tenants.stack.env["EDFI_IM_JWT_SIGNING_KEY"]
    token = jwt.encode(claims, key, algorithm="HS256")
    return httpx.Client(
        base_url=tenants.stack.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


@pytest.mark.parametrize(
    "claim", ["", {}, 0, None, [1], [None], [], [A, 7], "district a", {"name": A}]
)
def test_a_tenants_claim_that_is_not_a_list_of_names_is_refused_never_unlimited(
    tenants: Tenants, claim: object
) -> None:
    """A token limited in a way that cannot be read gets nothing: 401 on every tenant, and a
    delete on another tenant's instance is not accepted (issue 14: such claims gave every
    tenant, and [1] or [null] a 500)."""
    with tenants.api(B) as api_b:
        theirs = _completed(api_b, create(api_b, unique_name("Guarded"))["id"])
    with _forged(tenants, claim) as forged:
        for tenant in (A, B):
            r = forged.get("/v2/dbInstances", headers={"tenant": tenant})
            _problem(r, 401)
        _problem(forged.delete(f"/v2/dbInstances/{theirs['id']}", headers={"tenant": B}), 401)
    with tenants.api(B) as api_b:
        assert api_b.get(f"/v2/dbInstances/{theirs['id']}").json()["status"] == "Completed"


# --- schedules, maintenance and messages of a tenant ---------------------------------------------


def test_a_schedule_fires_into_its_own_tenant_and_maintenance_runs_there(
    tenants: Tenants,
) -> None:
    name = unique_name("Scheduled")
    run_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    once = {"type": "once", "runAt": run_at.isoformat()}
    with tenants.api(A) as api_a, tenants.api(B) as api_b:
        r = api_b.post(
            "/v2/schedules",
            json={
                "name": f"create {uuid.uuid4().hex[:8]}",
                "job": {
                    "type": "createInstance",
                    "parameters": {"name": name, "databaseTemplate": "Minimal"},
                },
                "trigger": once,
            },
        )
        assert r.status_code == 201, r.text
        r = api_a.post(
            "/v2/schedules",
            json={
                "name": f"reconcile {uuid.uuid4().hex[:8]}",
                "job": {"type": "reconcile", "parameters": {"repair": False}},
                "trigger": once,
            },
        )
        assert r.status_code == 201, r.text
        reconcile_schedule = r.json()["id"]

        made = _until(
            lambda: next(
                (
                    i
                    for i in api_b.get("/v2/dbInstances", params={"limit": 500}).json()
                    if i["name"] == name
                ),
                None,
            )
        )
        done = _completed(api_b, made["id"])
        assert done["databaseName"].startswith(tenants.prefix[B])
        assert name not in _names(api_a)

        def reconciled() -> dict[str, Any] | None:
            jobs = api_a.get("/v2/jobs", params={"scheduleId": reconcile_schedule}).json()
            return jobs[0] if jobs and jobs[0]["status"] == "Completed" else None

        job = _until(reconciled)
        assert job["type"] == "reconcile" and job["result"] is not None
        # A's reconcile ran on A's admin database: B's new database is nothing of A's.
        assert done["databaseName"] not in json.dumps(job["result"])
        [(tenant,)] = pg.query(
            tenants.admin[A],
            "SELECT command->>'tenant' FROM edfi_im.jobs WHERE id = %s",
            (uuid.UUID(job["id"]),),
        )
        assert tenant == A
        assert api_b.get(f"/v2/jobs/{job['id']}").status_code == 404


def test_a_command_for_a_tenant_no_service_knows_is_dead_lettered(tenants: Tenants) -> None:
    vhost = tenants.stack.vhost
    before = rabbit.queue(vhost, PROVISIONER_DEAD_QUEUE).get("messages", 0)
    message_id = str(uuid.uuid4())
    command = InstanceRequested(
        job_id=uuid.uuid4(),
        tenant="district-z",
        instance_id=1,
        operation=Operation.DELETE,
        database_name=f"{tenants.prefix[A]}Nobody",
    )

    async def send() -> None:
        publisher = ConfirmingPublisher(tenants.stack.env["EDFI_IM_RABBITMQ_URL"])
        try:
            await publisher.publish(
                exchange=REQUESTS_EXCHANGE,
                routing_key="district-z.1",
                body=command.model_dump(mode="json"),
                message_id=message_id,
                message_type=message_type(command),
                correlation_id=None,
            )
        finally:
            await publisher.close()

    asyncio.run(send())
    _until(lambda: rabbit.queue(vhost, PROVISIONER_DEAD_QUEUE).get("messages", 0) > before)
    assert tenants.stack.logged_since_start(
        "provisioner", "command for an unknown tenant dead-lettered"
    )


# --- Ed-Fi Admin API's routes with tenants --------------------------------------------------------


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_admin_apps_sequence_multi_tenant(tenants: Tenants, version: str) -> None:
    from tests.e2e.test_edfi_admin_api import admin_app_sequence

    admin_app_sequence(tenants.stack.url, B, multitenant=True, version=version)
