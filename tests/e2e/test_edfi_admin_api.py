"""Ed-Fi ODS-Admin-API's own instance routes (b6224a88), replayed as its examples and Ed-Fi Admin
App 4 make them against the real stack: the information endpoint, `/v2/odsInstances/manage`,
`/v3/dataStores/manage`, the tenant's instance listing, and paths as Admin App writes them.
What the gateway answers at its door (the information endpoint, error bodies, names in use, paths
in any case, another tenant's listing) is tests/contract/test_edfi_admin_api.py."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import unique_name
from tests.support import pg
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

MANAGE = {"v2": "/v2/odsInstances/manage", "v3": "/v3/dataStores/manage"}
LABEL = {"v2": "OdsInstanceManage", "v3": "DataStoreManage"}
ENTITY = {"v2": "odsInstanceManage", "v3": "dataStoreManage"}
ID_FIELD = {"v2": "odsInstanceId", "v3": "dataStoreId"}
LISTING = {
    "v2": "/v2/tenants/default/odsInstances/edOrgs",
    "v3": "/v3/tenants/default/dataStores/edOrgs",
}
ELEMENTS = {"v2": "odsInstances", "v3": "dataStores"}
MANAGE_ID = {"v2": "odsInstanceManageId", "v3": "dataStoreManageId"}


def _name(prefix: str = "Manage") -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def _until(api: httpx.Client, path: str, done: set[str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = api.get(path)
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"] in done:
            return body
        time.sleep(0.1)
    raise TimeoutError(f"{path} still {body.get('status')}")


def _create(api: httpx.Client, version: str, name: str, template: str = "Minimal") -> int:
    r = api.post(MANAGE[version], json={"name": name, "databaseTemplate": template})
    assert r.status_code == 202, r.text
    assert r.content == b""
    return int(r.headers["location"].rsplit("/", 1)[1])


# --- create, read, list, delete: v2 and v3 -----------------------------------------------------


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_create_answers_202_with_a_location_ending_in_the_id_then_it_is_created(
    api: httpx.Client, admin_database: str, version: str
) -> None:
    name = _name()
    r = api.post(MANAGE[version], json={"Name": f" {name} ", "databaseTemplate": "Minimal"})
    assert r.status_code == 202, r.text
    assert r.content == b""
    location = r.headers["location"]
    if version == "v2":
        assert location.startswith("/v2/odsInstances/manage/")
    else:  # v3 answers an absolute address, as Admin API 3 does
        assert location.startswith(f"{api.base_url}/v3/dataStores/manage/".replace("//v3", "/v3"))
    manage_id = int(location.rsplit("/", 1)[1])

    first = api.get(location).json()  # the Location is a real route
    assert first["id"] == manage_id and first["name"] == name  # trimmed, as Admin API stores it
    assert first["status"] in {"PendingCreate", "CreateInProgress", "Created"}
    assert set(first) == {
        "id",
        "name",
        ID_FIELD[version],
        ID_FIELD[version].replace("Id", "Name"),
        "status",
        "databaseTemplate",
        "databaseName",
        "lastRefreshed",
        "lastModifiedDate",
    }

    done = _until(api, f"{MANAGE[version]}/{manage_id}", {"Created", "CreateError"})
    assert done["status"] == "Created", done
    assert done["databaseTemplate"] == "Minimal"
    assert pg.exists(done["databaseName"])
    [(ods_id,)] = pg.query(
        admin_database, "SELECT odsinstanceid FROM dbo.odsinstances WHERE name = %s", (name,)
    )
    assert done[ID_FIELD[version]] == ods_id
    assert done[ID_FIELD[version].replace("Id", "Name")] == name

    # Listed by name and by id, ordered by id; the page size defaults to 25.
    assert [i["id"] for i in api.get(MANAGE[version], params={"name": name}).json()] == [manage_id]
    assert [i["id"] for i in api.get(MANAGE[version], params={"id": manage_id}).json()] == [
        manage_id
    ]
    assert api.get(MANAGE[version], params={"name": name.upper()}).json() == []
    page = api.get(MANAGE[version]).json()
    assert len(page) <= 25 and [i["id"] for i in page] == sorted(i["id"] for i in page)
    assert api.get(MANAGE[version], params={"limit": 0}).json() == []


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_delete_is_refused_while_the_create_is_pending_then_204_then_404(
    api: httpx.Client, version: str
) -> None:
    name = _name()
    manage_id = _create(api, version, name)
    path = f"{MANAGE[version]}/{manage_id}"
    r = api.delete(path)
    if r.status_code == 400:  # the create had not finished: Admin API's message, key `id`
        body = r.json()
        assert body["title"] == "Validation failed"
        assert body["errors"]["id"][0] in {
            f"{LABEL[version]} is being provisioned. Wait for creation to complete.",
            f"{LABEL[version]} is currently being provisioned. Wait for creation to complete.",
        }
        _until(api, path, {"Created"})
        r = api.delete(path)
    assert r.status_code == 204, r.text
    assert r.content == b""
    again = api.delete(path)
    if again.status_code == 400:  # still deleting
        assert again.json()["errors"]["id"][0] in {
            f"{LABEL[version]} is already queued for deletion.",
            f"{LABEL[version]} is currently being deleted.",
        }
    gone = _until(api, path, {"Deleted", "DeleteError"})
    assert gone["status"] == "Deleted"
    assert not pg.exists(gone["databaseName"])
    # Deleted rows stay listed, as Admin API lists them; deleting again is a 404.
    assert [i["status"] for i in api.get(MANAGE[version], params={"id": manage_id}).json()] == [
        "Deleted"
    ]
    r = api.delete(path)
    assert r.status_code == 404, r.text
    title = f"Not found: {ENTITY[version]} with ID {manage_id}. It may have been recently deleted."
    assert r.json()["title"] == title
    # The name is free again.
    _until(api, f"{MANAGE[version]}/{_create(api, version, name)}", {"Created"})


def test_names_admin_api_would_let_collide_are_refused_not_dropped(api: httpx.Client) -> None:
    """Admin API accepts "A B" and "A_B" (one database name) and re-creates the database of the
    first for the second; here the second is refused and the first keeps its database."""
    word = uuid.uuid4().hex[:8]
    first = _create(api, "v2", f"Twin {word}")
    done = _until(api, f"{MANAGE['v2']}/{first}", {"Created"})
    r = api.post(MANAGE["v2"], json={"name": f"Twin_{word}", "databaseTemplate": "Minimal"})
    assert r.status_code == 400, r.text
    [message] = r.json()["errors"]["Name"]
    assert done["databaseName"] in message
    assert pg.exists(done["databaseName"])


# --- the tenant's listing, as Admin App reads it -------------------------------------------------


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_the_tenant_listing_shows_pending_created_deleted_and_other_tools_rows(
    api: httpx.Client, admin_database: str, version: str
) -> None:
    foreign = unique_name("Made elsewhere")
    pg.execute(
        admin_database,
        "INSERT INTO dbo.odsinstances (name, instancetype, connectionstring) "
        "VALUES (%s, 'Other', 'not-encrypted')",
        (foreign,),
    )
    name = _name("Listed")
    manage_id = _create(api, version, name)
    element = MANAGE_ID[version]

    def listed() -> dict[str, Any]:
        r = api.get(LISTING[version], headers={"tenant": "default"})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert body["id"] == body["name"] == "default"
        return body

    early = {e["name"]: e for e in listed()[ELEMENTS[version]]}
    mine = early[name]
    assert mine[element] == manage_id
    if mine["status"] != "Created":
        assert mine["id"] is None  # not in dbo yet
        assert mine["status"] in {"PendingCreate", "CreateInProgress"}
    other = early[foreign]
    assert other[element] is None and other["status"] == "Created"
    assert other["databaseName"] is None and other["educationOrganizations"] == []
    assert other[("instanceType" if version == "v2" else "dataStoreType")] == "Other"

    _until(api, f"{MANAGE[version]}/{manage_id}", {"Created"})
    created = {e["name"]: e for e in listed()[ELEMENTS[version]]}[name]
    assert created["id"] is not None and created["status"] == "Created"
    # dbo rows first, ordered by name (as Admin API's).
    names = [e["name"] for e in listed()[ELEMENTS[version]] if e["id"] is not None]
    assert names == sorted(names)

    assert api.delete(f"{MANAGE[version]}/{manage_id}").status_code == 204
    _until(api, f"{MANAGE[version]}/{manage_id}", {"Deleted"})
    gone = [e for e in listed()[ELEMENTS[version]] if e[element] == manage_id]
    assert [(e["id"], e["status"]) for e in gone] == [(None, "Deleted")]


def test_education_organizations_come_from_admin_apis_table_when_it_is_there(
    api: httpx.Client, admin_database: str
) -> None:
    pg.execute(
        admin_database,
        "CREATE SCHEMA IF NOT EXISTS adminapi; "
        "CREATE TABLE IF NOT EXISTS adminapi.educationorganizations ("
        " id integer GENERATED ALWAYS AS IDENTITY NOT NULL, instanceid integer NOT NULL,"
        " instancename varchar(100) NOT NULL, educationorganizationid bigint NOT NULL,"
        " nameofinstitution varchar(75) NOT NULL, shortnameofinstitution varchar(75),"
        " discriminator varchar(128) NOT NULL, parentid bigint, odsdatabasename varchar(255),"
        " lastrefreshed timestamp DEFAULT now(), lastmodifieddate timestamp)",
    )
    name = _name("Edorgs")
    manage_id = _create(api, "v2", name)
    done = _until(api, f"{MANAGE['v2']}/{manage_id}", {"Created"})
    ods_id = done["odsInstanceId"]
    pg.execute(
        admin_database,
        "INSERT INTO adminapi.educationorganizations (instanceid, instancename, "
        "educationorganizationid, nameofinstitution, shortnameofinstitution, discriminator, "
        "parentid) VALUES (%s, %s, 255901, 'Grand Bend ISD', 'GBISD', "
        "'edfi.LocalEducationAgency', NULL)",
        (ods_id, name),
    )
    [element] = [
        e
        for e in api.get(LISTING["v2"]).json()["odsInstances"]
        if e["odsInstanceManageId"] == manage_id
    ]
    assert element["educationOrganizations"] == [
        {
            "educationOrganizationId": 255901,
            "nameOfInstitution": "Grand Bend ISD",
            "shortNameOfInstitution": "GBISD",
            "discriminator": "edfi.LocalEducationAgency",
            "parentId": None,
        }
    ]


# --- Ed-Fi Admin App's sequence ------------------------------------------------------------------

ADMIN_APP_CHARSET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!@#$%^&*"


def admin_app_secret() -> str:
    """A secret as Admin App draws it (32 characters over its charset); Admin API refuses one
    without a digit or a symbol, as this system does: Admin App then has no credentials, so
    draw until the secret has all four kinds, as its next registration would."""
    while True:
        secret = "".join(random.choice(ADMIN_APP_CHARSET) for _ in range(32))
        kinds = (str.isupper, str.islower, str.isdigit, lambda c: c in "!@#$%^&*")
        if all(any(kind(c) for c in secret) for kind in kinds):
            return secret


def admin_app_sequence(base: str, tenant: str, multitenant: bool, version: str = "v2") -> None:
    """What Admin App 4 does with an environment (contract rows D1, A1, A2, D4, C1, D4, C3)."""
    info = httpx.get(base + "/", headers={"Accept": "application/json"}, timeout=5).json()
    assert info["version"] and info["specificationVersion"] in {"v2", "v3"}
    assert info["tenancy"]["multitenantMode"] is multitenant
    if multitenant:
        assert tenant in info["tenancy"]["tenants"]
    root = base + "/"  # `new URL(adminApiUrl).toString()` of a bare origin
    client_id, secret = f"client_{uuid.uuid4()}", admin_app_secret()
    r = httpx.post(
        f"{root}/connect/register",
        data={"ClientId": client_id, "ClientSecret": secret, "DisplayName": "AdminApp-v4-x1y2"},
        headers={"tenant": tenant} if multitenant else {},
    )
    assert r.status_code == 200, r.text  # exactly 200, or Admin App gives up
    r = httpx.post(
        f"{root}/connect/token",
        data={
            "client_id": client_id,
            "client_secret": secret,
            "grant_type": "client_credentials",
            "scope": "edfi_admin_api/full_access",
        },
        headers={"Accept": "application/json", "tenant": tenant},
    )
    assert r.status_code == 200, r.text
    token = r.json()
    assert isinstance(token["expires_in"], int)
    headers = {"Authorization": f"Bearer {token['access_token']}", "tenant": tenant}
    resource, manage = ("odsInstances", "odsInstances/manage")
    if version == "v3":
        resource, manage = ("dataStores", "dataStores/manage")
    listing = f"{base}/{version}/tenants/{tenant}/{resource}/edOrgs"
    with httpx.Client(headers=headers, timeout=15) as aa:

        def rows() -> list[dict[str, Any]]:
            r = aa.get(listing)
            assert r.status_code == 200, r.text
            found: list[dict[str, Any]] = r.json()[resource]
            return found

        rows()
        name = _name("Admin App")  # its form: 3-29 characters of [A-Za-z0-9 _]
        r = aa.post(
            f"{base}/{version}/{manage}", json={"name": name, "databaseTemplate": "Minimal"}
        )
        assert r.status_code == 202, r.text
        manage_id = int(r.headers["location"].rsplit("/", 1)[1])  # /\d+$/
        key = MANAGE_ID[version]

        def status() -> str | None:
            mine = [row for row in rows() if row[key] == manage_id]
            return mine[-1]["status"] if mine else None

        deadline = time.monotonic() + 60
        while status() != "Created":
            assert time.monotonic() < deadline, "never Created"
            time.sleep(0.2)
        assert all(row["id"] is not None for row in rows() if row[key] == manage_id)
        r = aa.delete(f"{base}/{version}/{manage}/{manage_id}")
        assert r.status_code == 204, r.text
        deadline = time.monotonic() + 60
        while status() not in {None, "Deleted"}:
            assert time.monotonic() < deadline, "never Deleted"
            time.sleep(0.2)


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_admin_apps_sequence_single_tenant(stack: Stack, version: str) -> None:
    admin_app_sequence(stack.url, "default", multitenant=False, version=version)
