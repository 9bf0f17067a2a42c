"""The Ed-Fi Admin Console's calls, replayed as it makes them (another origin, a bearer token
from its browser, a `Tenant` header, paths in either case), against the real stack; and the
`dbo` rows its instances get. What the gateway answers at its door (preflights, tenants,
refusals, what is not managed here, paging, expired tokens, the README's Console configuration) is
tests/contract/test_admin_console.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from services.rules.crypto import decrypt
from services.runtime.settings import Settings
from tests.conftest import CONSOLE_ORIGIN, DISCOVERY_URL, unique_name
from tests.support import pg
from tests.support.polling import problem as _problem
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

SECRET = "Console-Secret-0123456789-abcdefXYZ!"
TERMINAL = {"Completed", "Error", "Deleted", "Delete_Failed", "Rename_Failed"}


@pytest.fixture(scope="module")
def console(stack: Stack) -> Iterator[httpx.Client]:
    """The Console's client: registered, then a token by client credentials from its page."""
    client_id = f"admin-console-{uuid.uuid4().hex[:8]}"
    r = httpx.post(
        f"{stack.url}/connect/register",
        data={"ClientId": client_id, "ClientSecret": SECRET, "DisplayName": "Admin Console"},
    )
    assert r.status_code == 200, r.text
    r = httpx.post(
        f"{stack.url}/connect/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": SECRET,
            "scope": "edfi_admin_api/full_access",
        },
        headers={"Origin": CONSOLE_ORIGIN},
    )
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == CONSOLE_ORIGIN
    body = r.json()
    assert body["expires_in"] > 0
    headers = {
        "Authorization": f"Bearer {body['access_token']}",
        "Tenant": "default",
        "Origin": CONSOLE_ORIGIN,
    }
    with httpx.Client(base_url=stack.url, headers=headers, timeout=15) as client:
        yield client


def _until_status(console: httpx.Client, instance_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = console.get(f"/adminconsole/odsInstances/{instance_id}").json()
        if body["status"] in TERMINAL:
            return body
        time.sleep(0.1)
    raise TimeoutError(f"instance {instance_id} did not finish")


def _dbo(admin_database: str, name: str) -> dict[str, Any]:
    [(ods_id, instance_type, cs)] = pg.query(
        admin_database,
        "SELECT odsinstanceid, instancetype, connectionstring FROM dbo.odsinstances "
        "WHERE name = %s",
        (name,),
    )
    contexts = pg.query(
        admin_database,
        "SELECT contextkey, contextvalue FROM dbo.odsinstancecontexts "
        "WHERE odsinstance_odsinstanceid = %s ORDER BY contextkey",
        (ods_id,),
    )
    derivatives = pg.query(
        admin_database,
        "SELECT derivativetype, connectionstring FROM dbo.odsinstancederivatives "
        "WHERE odsinstance_odsinstanceid = %s",
        (ods_id,),
    )
    return {
        "id": ods_id,
        "instanceType": instance_type,
        "connectionString": cs,
        "contexts": dict(contexts),
        "derivatives": dict(derivatives),
    }


# --- an instance's life as the Console sees it ------------------------------------------------


def test_create_with_contexts_and_a_derivative_update_rename_and_delete(
    console: httpx.Client, admin_database: str, encryption_key: bytes
) -> None:
    name = unique_name("Console")
    body = {
        "tenantId": 1,
        "tenantName": "default",
        "name": name,
        "instanceType": "DistrictSpecific",
        "odsInstanceContexts": [{"contextKey": "schoolYear", "contextValue": "2027"}],
        "odsInstanceDerivatives": [{"derivativeType": "ReadReplica"}],
    }
    r = console.post("/adminconsole/odsInstances", json=body)
    assert r.status_code == 202, r.text
    made = r.json()
    assert r.headers["location"].lower() == f"/adminconsole/odsinstances/{made['id']}"
    assert made["status"] == "Pending" and made["instanceType"] == "DistrictSpecific"
    assert [(c["contextKey"], c["contextValue"]) for c in made["odsInstanceContexts"]] == [
        ("schoolYear", "2027")
    ]
    assert [d["derivativeType"] for d in made["odsInstanceDerivatives"]] == ["ReadReplica"]

    # A refresh of the list, as the Console does it, shows it until it is Completed.
    listed = console.get("/adminconsole/odsinstances").json()
    assert made["id"] in {i["id"] for i in listed}
    done = _until_status(console, made["id"])
    assert done["status"] == "Completed"
    completed = console.get("/adminconsole/odsInstances", params={"status": "Completed"}).json()
    assert made["id"] in {i["id"] for i in completed}
    assert all(i["status"] == "Completed" for i in completed)
    assert done["tenantId"] == 1 and done["baseUrl"] == DISCOVERY_URL

    # dbo has it all, written when the instance completed.
    dbo = _dbo(admin_database, name)
    assert dbo["instanceType"] == "DistrictSpecific"
    assert dbo["contexts"] == {"schoolYear": "2027"}
    assert list(dbo["derivatives"]) == ["ReadReplica"]
    assert decrypt(dbo["derivatives"]["ReadReplica"], encryption_key) == decrypt(
        dbo["connectionString"], encryption_key
    )
    # … and the Console now sees dbo's rows, with their ids.
    [context] = done["odsInstanceContexts"]
    assert context["instanceId"] == made["id"]
    [(context_id,)] = pg.query(
        admin_database,
        "SELECT odsinstancecontextid FROM dbo.odsinstancecontexts "
        "WHERE odsinstance_odsinstanceid = %s",
        (dbo["id"],),
    )
    assert context["id"] == context_id

    # The same name with other contexts and no derivative: updated at once (200).
    changed = body | {
        "odsInstanceContexts": [
            {"contextKey": "schoolYear", "contextValue": "2028"},
            {"contextKey": "district", "contextValue": "255901"},
        ],
        "odsInstanceDerivatives": [],
    }
    r = console.put(f"/adminconsole/odsInstances/{made['id']}", json=changed)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "Completed"
    dbo = _dbo(admin_database, name)
    assert dbo["contexts"] == {"district": "255901", "schoolYear": "2028"}
    assert dbo["derivatives"] == {}

    # A new name: a rename (202, Pending_Rename), then Completed under the new name.
    new_name = unique_name("Console Renamed")
    r = console.put(f"/adminconsole/odsInstances/{made['id']}", json=changed | {"name": new_name})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "Pending_Rename"
    renamed = _until_status(console, made["id"])
    assert (renamed["status"], renamed["name"]) == ("Completed", new_name)
    assert _dbo(admin_database, new_name)["contexts"] == {
        "district": "255901",
        "schoolYear": "2028",
    }

    # Delete: 202, then Deleted (still listed; the Console hides it), dbo rows gone.
    r = console.delete(f"/adminconsole/odsInstances/{made['id']}")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "Pending_Delete"
    assert _until_status(console, made["id"])["status"] == "Deleted"
    assert made["id"] in {i["id"] for i in console.get("/adminconsole/odsInstances").json()}
    assert not pg.query(
        admin_database, "SELECT 1 FROM dbo.odsinstances WHERE name = %s", (new_name,)
    )
    _problem(console.get("/adminconsole/odsInstances/2147483647"), 404)
    # A Deleted instance is kept for audit and changes no more (as /v2 answers it).
    before = console.get(f"/adminconsole/odsInstances/{made['id']}").json()
    r = console.put(
        f"/adminconsole/odsInstances/{made['id']}",
        json={
            "name": new_name,
            "instanceType": "Changed",
            "odsInstanceContexts": [{"contextKey": "schoolYear", "contextValue": "1999"}],
        },
    )
    assert "was deleted" in _problem(r, 404)["detail"]
    assert console.get(f"/adminconsole/odsInstances/{made['id']}").json() == before


def test_v2_create_takes_the_same_details(api: httpx.Client, admin_database: str) -> None:
    name = unique_name("V2 Details")
    r = api.post(
        "/v2/dbInstances",
        json={
            "name": name,
            "databaseTemplate": "Minimal",
            "instanceType": "Statewide",
            "odsInstanceContexts": [{"contextKey": "schoolYear", "contextValue": "2026"}],
        },
    )
    assert r.status_code == 202, r.text
    assert r.json()["instanceType"] == "Statewide"
    deadline = time.monotonic() + 60
    while api.get(f"/v2/dbInstances/{r.json()['id']}").json()["status"] != "Completed":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    dbo = _dbo(admin_database, name)
    assert (dbo["instanceType"], dbo["contexts"], dbo["derivatives"]) == (
        "Statewide",
        {"schoolYear": "2026"},
        {},
    )


def test_a_failed_create_shows_why_and_creating_again_recovers_it(
    console: httpx.Client, settings: Settings
) -> None:
    """The Console offers Delete only for Completed instances: a failed create's name must not
    stay taken. Its create failed before it made a database, so creating it again retires it."""
    name = unique_name("Console fails")
    database = settings.database_name_pattern.format(name=name.replace(" ", "_"))
    pg.create(database)  # someone else's database holds the name: the create fails
    try:
        r = console.post("/adminconsole/odsInstances", json={"name": name})
        assert r.status_code == 202, r.text
        failed = _until_status(console, r.json()["id"])
        assert failed["status"] == "Error"
        assert database in failed["error"] and "left untouched" in failed["error"]
        listed = {i["id"]: i for i in console.get("/adminconsole/odsInstances").json()}
        assert listed[failed["id"]]["error"] == failed["error"]
    finally:
        pg.drop(database)
    r = console.post("/adminconsole/odsInstances", json={"name": name})
    assert r.status_code == 202, r.text
    again = _until_status(console, r.json()["id"])
    assert again["status"] == "Completed" and again["error"] is None
    retired = console.get(f"/adminconsole/odsInstances/{failed['id']}").json()
    assert retired["status"] == "Deleted"
    assert "retired: a new create of" in retired["error"]
    assert pg.exists(database)
