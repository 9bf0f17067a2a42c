"""Ed-Fi ODS-Admin-API's own instance routes (b6224a88) at the gateway's door, replayed as its
examples and Ed-Fi Admin App 4 make them (moved from tests/e2e/test_edfi_admin_api.py): the
information endpoint, bare origins with a trailing slash, Admin API 2's and 3's error bodies, a
name in use, paths in any case, another tenant's listing. Creates carried out and Admin App's
whole sequence stay end-to-end."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support.inprocess import InProcessGateway

pytestmark = pytest.mark.contract

MANAGE = {"v2": "/v2/odsInstances/manage", "v3": "/v3/dataStores/manage"}
LABEL = {"v2": "OdsInstanceManage", "v3": "DataStoreManage"}


def _name(prefix: str = "Manage") -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def _create(api: httpx.Client, version: str, name: str, template: str = "Minimal") -> int:
    r = api.post(MANAGE[version], json={"name": name, "databaseTemplate": template})
    assert r.status_code == 202, r.text
    assert r.content == b""
    return int(r.headers["location"].rsplit("/", 1)[1])


# --- the information endpoint ------------------------------------------------------------------


def test_the_information_endpoint_is_anonymous_and_says_what_admin_app_needs(
    gateway: InProcessGateway,
) -> None:
    for path in ("/", "//"):
        r = gateway.http.get(gateway.url + path, headers={"Accept": "application/json"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["version"] == "2.0"
        assert body["specificationVersion"] == "v2"
        assert body["tenancy"] == {"multitenantMode": False, "tenants": []}
        assert body["build"]


def test_a_bare_origin_with_a_trailing_slash_still_reaches_register_and_token(
    gateway: InProcessGateway,
) -> None:
    """Admin App builds `${new URL(origin)}/connect/register`: `//connect/register`."""
    client_id = f"client_{uuid.uuid4()}"
    secret = "Aa1!" + uuid.uuid4().hex + "Zz9#"
    r = gateway.http.post(
        gateway.url + "//connect/register",
        data={"ClientId": client_id, "ClientSecret": secret, "DisplayName": "AdminApp-v4-ab12"},
    )
    assert r.status_code == 200, r.text
    r = gateway.http.post(
        gateway.url + "//connect/token",
        data={
            "client_id": client_id,
            "client_secret": secret,
            "grant_type": "client_credentials",
            "scope": "edfi_admin_api/full_access",
        },
        headers={"Accept": "application/json", "tenant": "default"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["expires_in"] > 0


def test_v2_error_bodies_are_admin_api_2s(api: httpx.Client) -> None:
    r = api.post(MANAGE["v2"], json={"name": "", "databaseTemplate": ""})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["title"] == "Validation failed"
    assert body["errors"] == {
        "Name": [
            "'Name' must not be empty.",
            "'Name' may only contain letters, numbers, spaces, and underscores.",
        ],
        "DatabaseTemplate": [
            "'Database Template' must not be empty.",
            "'' is not a valid database template. Allowed values are: Minimal, Sample.",
        ],
    }
    r = api.post(MANAGE["v2"], json={"name": "x" * 47 + "!", "databaseTemplate": "minimal"})
    errors = r.json()["errors"]
    assert errors["Name"] == [
        "'Name' must be 46 characters or fewer so the generated database name fits within the "
        "63-character portable limit.",
        "'Name' may only contain letters, numbers, spaces, and underscores.",
    ]
    assert errors["DatabaseTemplate"] == [
        "'minimal' is not a valid database template. Allowed values are: Minimal, Sample."
    ]
    r = api.get(f"{MANAGE['v2']}/2147483000")
    assert r.status_code == 404
    assert r.json()["title"] == (
        "Not found: odsInstanceManage with ID 2147483000. It may have been recently deleted."
    )
    r = api.post(MANAGE["v2"], content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["message"].startswith("The request body contains malformed JSON.")
    assert api.get(f"{MANAGE['v2']}/abc").status_code == 400
    assert api.get(MANAGE["v2"], params={"offset": "-1"}).status_code == 400


def test_v3_error_bodies_are_rfc_7807_with_ed_fis_types(api: httpx.Client) -> None:
    r = api.post(MANAGE["v3"], json={"name": "bad-name", "databaseTemplate": "Minimal"})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"] == "urn:ed-fi:management-api:bad-request:validation"
    assert body["status"] == 400 and body["title"] == "Validation failed"
    assert (
        body["errors"]
        == body["validationErrors"]
        == {"Name": ["'Name' may only contain letters, numbers, spaces, and underscores."]}
    )
    assert body["correlationId"] == r.headers["x-correlation-id"]
    r = api.get(f"{MANAGE['v3']}/2147483000")
    assert r.status_code == 404
    assert r.json()["type"] == "urn:ed-fi:management-api:not-found"
    r = api.post(MANAGE["v3"], content=b"[1,", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["type"] == "urn:ed-fi:management-api:bad-request:data"


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_a_name_in_use_is_admin_apis_validation_error(api: httpx.Client, version: str) -> None:
    name = _name()
    _create(api, version, name)
    r = api.post(MANAGE[version], json={"name": name, "databaseTemplate": "Sample"})
    assert r.status_code == 400, r.text
    assert r.json()["errors"]["Name"] == [f"An {LABEL[version]} named '{name}' already exists."]


def test_paths_match_ignoring_case_as_admin_apis_do(api: httpx.Client) -> None:
    manage_id = _create(api, "v2", _name())
    assert api.get(f"/V2/ODSINSTANCES/manage/{manage_id}").json()["id"] == manage_id
    assert api.get(f"/v3/datastores/MANAGE/{manage_id}").json()["id"] == manage_id
    assert api.get("/v2/tenants/default/odsinstances/edorgs").status_code == 200


# --- the tenant's listing ------------------------------------------------------------------------


def test_the_tenant_listing_of_another_tenant_name_is_404_in_single_tenant_mode(
    api: httpx.Client,
) -> None:
    r = api.get("/v2/tenants/someone/odsInstances/edOrgs")
    assert r.status_code == 404
    assert api.get("/v2/tenants/DEFAULT/odsInstances/edOrgs").status_code == 200
