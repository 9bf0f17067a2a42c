"""Tenants at a multi-tenant gateway's door, as Ed-Fi Admin API 2 has them (moved from
tests/e2e/test_tenants.py): the `tenant` header is required and checked, an unknown tenant is
404 (names match ignoring case), a caller limited to one tenant (by its registration or a
token's single-name claim) finds another's instances do not exist, a client can be limited only
to tenants that exist, the tenant's listing needs the header of its own tenant, the information
endpoint lists the tenants, and a job no service takes says why it waits.

A gateway in-process with two tenants, each with its own admin database (cloned) and database
name pattern; the clients live in the top-level admin database (cloned too).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import unique_name
from tests.support import pg
from tests.support.flows import create
from tests.support.inprocess import AdminTemplate, InProcessGateway, gateway_on, settings_from
from tests.support.polling import problem as _problem
from tests.support.polling import until as _until

pytestmark = pytest.mark.contract

A, B = "district-a", "District-B"
B_SERVER_HOST = "ods-b.example.org"
GOOD_SECRET = "Correct-Horse-Battery-Staple-2027!"


@dataclass
class Tenants:
    gateway: InProcessGateway
    admin: dict[str, str]  # tenant -> its admin database
    prefix: dict[str, str]  # tenant -> its ODS database-name prefix

    def api(self, tenant: str | None, scope: str = "edfi_admin_api/full_access") -> httpx.Client:
        return self.gateway.client(scope, tenant=tenant)


@pytest.fixture(scope="module")
def tenants(
    admin_template: AdminTemplate, contract_env: dict[str, str], db_prefix: str
) -> Iterator[Tenants]:
    admin = {A: admin_template.clone("a"), B: admin_template.clone("b")}
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
            # another host name.
            "templates": {"Minimal": "EdFi_Ods_Minimal_Template"},
            "ods_connection_string_template": (
                f"host={B_SERVER_HOST};port=5432;username=postgres;database={{database}}"
            ),
        },
    }
    try:
        with gateway_on(
            admin_template, contract_env, EDFI_IM_TENANTS=json.dumps(config)
        ) as gateway:
            yield Tenants(gateway, admin, prefix)
    finally:
        for database in admin.values():
            admin_template.drop_later(database)


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
    key = tenants.gateway.env["EDFI_IM_JWT_SIGNING_KEY"]
    token = jwt.encode(claims, key, algorithm="HS256")
    return tenants.gateway.anonymous(10, Authorization=f"Bearer {token}")


# --- the header ---------------------------------------------------------------------------------


def test_without_a_tenant_header_a_multi_tenant_gateway_answers_400_naming_it(
    tenants: Tenants,
) -> None:
    with tenants.api(None) as api:
        body = _problem(api.get("/v2/dbInstances"), 400)
        assert "tenant" in body["errors"]
        _problem(
            api.post("/v2/dbInstances", json={"name": "x", "databaseTemplate": "Minimal"}), 400
        )
        for bad in ("", "district a", "district_a", "district-a;drop", "a" * 51):
            r = api.get("/v2/jobs", headers={"tenant": bad})
            assert "tenant" in _problem(r, 400)["errors"], bad
    # Health, readiness and the token endpoints need no tenant.
    assert tenants.gateway.http.get("/health").status_code == 200
    assert tenants.gateway.http.get("/ready").status_code == 200


def test_an_unknown_tenant_is_404_and_names_match_ignoring_case(tenants: Tenants) -> None:
    with tenants.api("district-z") as api:
        body = _problem(api.get("/v2/dbInstances"), 404)
        assert body["detail"] == "no tenant named 'district-z'"
    with tenants.api("DISTRICT-A") as api:
        assert api.get("/v2/dbInstances").status_code == 200


# --- a caller limited to tenants -----------------------------------------------------------------


def test_a_tenants_claim_that_is_one_name_limits_to_that_tenant(tenants: Tenants) -> None:
    """Keycloak sends a single-valued attribute as a string: it is one tenant."""
    with tenants.api(B) as api_b:
        theirs = create(api_b, unique_name("Single"))
    with _forged(tenants, A) as forged:
        assert forged.get("/v2/dbInstances", headers={"tenant": A}).status_code == 200
        _problem(forged.get(f"/v2/dbInstances/{theirs['id']}", headers={"tenant": B}), 404)
        _problem(forged.delete(f"/v2/dbInstances/{theirs['id']}", headers={"tenant": B}), 404)


def test_a_client_can_only_be_limited_to_tenants_that_exist(tenants: Tenants) -> None:
    r = tenants.gateway.http.post(
        "/connect/register",
        data={
            "ClientId": f"nowhere-{uuid.uuid4().hex[:8]}",
            "ClientSecret": GOOD_SECRET,
            "DisplayName": "Nowhere",
            "Tenants": f"{A},district-z",
        },
    )
    body = _problem(r, 422)
    assert list(body["errors"]) == ["Tenants"] and "district-z" in body["errors"]["Tenants"][0]


# --- a job nobody takes -------------------------------------------------------------------------


def test_a_job_of_a_tenant_only_the_gateway_knows_says_why_it_waits(
    tenants: Tenants, admin_template: AdminTemplate
) -> None:
    """A gateway configured with a tenant the provisioner and status service are not: its
    command is dead-lettered and nobody could fail its job (issue 14: it stayed Pending for
    good, silent). The gateway's own sweep makes the job say why it waits and where to look.
    (Here no other service runs at all: nobody takes the job either way.)"""
    gateway = tenants.gateway
    extra = admin_template.clone("c")
    config = json.loads(gateway.env["EDFI_IM_TENANTS"])
    config["district-c"] = {
        "admin_database_url": pg.database_url(extra),
        "database_name_pattern": tenants.prefix[A] + "C_{name}",
    }
    env = gateway.env | {
        "EDFI_IM_TENANTS": json.dumps(config),
        "EDFI_IM_ORPHAN_THRESHOLD_SECONDS": "4",
        "EDFI_IM_ORPHAN_CHECK_INTERVAL_SECONDS": "0.5",
    }
    gateway_c = InProcessGateway(settings_from(env), env, gateway.admin_database).start()
    try:
        headers = {"Authorization": f"Bearer {gateway.token()}", "tenant": "district-c"}
        with gateway_c.anonymous(10, **headers) as api_c:
            made = create(api_c, unique_name("Stranded"))

            def flagged() -> dict[str, Any] | None:
                job: dict[str, Any] = api_c.get(f"/v2/jobs/{made['jobId']}").json()
                return (
                    job if (job["progressMessage"] or "").startswith("Waiting to start") else None
                )

            job = _until(flagged, timeout=30)
            assert job["status"] == "Pending"
            assert "district-c" in job["progressMessage"]
            assert "dead-letters list" in job["progressMessage"]
    finally:
        gateway_c.stop()
        admin_template.drop_later(extra)


# --- Ed-Fi Admin API's routes with tenants --------------------------------------------------------


def test_the_information_endpoint_lists_the_tenants(tenants: Tenants) -> None:
    r = tenants.gateway.http.get("/")
    assert r.status_code == 200, r.text
    assert r.json()["tenancy"] == {"multitenantMode": True, "tenants": [A, B]}


def test_the_tenant_listing_needs_the_header_of_its_tenant_and_the_tenants_rows_only(
    tenants: Tenants,
) -> None:
    name = unique_name("Listing A")
    with tenants.api(A) as api:
        r = api.post("/v2/odsInstances/manage", json={"name": name, "databaseTemplate": "Minimal"})
        assert r.status_code == 202, r.text
        manage_id = int(r.headers["location"].rsplit("/", 1)[1])
        listed = api.get(f"/v2/tenants/{A}/odsInstances/edOrgs").json()
        assert listed["id"] == listed["name"] == A
        assert manage_id in {e["odsInstanceManageId"] for e in listed["odsInstances"]}
        mismatch = api.get(f"/v2/tenants/{B}/odsInstances/edOrgs")
        assert mismatch.status_code == 400
        assert mismatch.json()["errors"] == {
            "Tenant": ["Tenant header and URL tenant name do not match"]
        }
    with tenants.api(B) as api:
        names = {
            e["name"]
            for e in api.get(f"/v2/tenants/{B}/odsInstances/edOrgs").json()["odsInstances"]
        }
        assert name not in names
        # Manage ids are per tenant: A's instance is not B's.
        assert api.get(f"/v2/odsInstances/manage/{manage_id}").json().get("name") != name
    token = tenants.gateway.new_token(tenants=A)
    r = tenants.gateway.http.get(
        f"/v2/tenants/{B}/odsInstances/edOrgs",
        headers={"Authorization": f"Bearer {token}", "tenant": B},
    )
    assert r.status_code == 404  # a tenant the caller may not see does not exist for it
