"""Rename and delete end to end: the database on the server, edfi_im.dbinstances and Ed-Fi's
dbo tables change together (invariant 5); nothing is dropped that is not the instance's own
(invariant 6); an operation in flight blocks others (invariant 2)."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from services.rules import crypto
from services.rules.connection_strings import parse_connection_string
from services.runtime.settings import Settings
from tests.conftest import unique_name
from tests.support import pg
from tests.support.flows import create, create_completed, rename
from tests.support.polling import wait_for_instance

pytestmark = pytest.mark.e2e


def _dbo_row(admin_database: str, ods_id: int) -> tuple[Any, ...] | None:
    rows = pg.query(
        admin_database,
        "SELECT name, connectionstring FROM dbo.odsinstances WHERE odsinstanceid = %s",
        (ods_id,),
    )
    return rows[0] if rows else None


def _database_in(conn_str: str, key: bytes) -> str:
    return parse_connection_string(crypto.decrypt(conn_str, key))["database"]


def test_rename_moves_the_database_and_updates_both_tables(
    api: httpx.Client, admin_database: str, db_prefix: str, encryption_key: bytes
) -> None:
    done = create_completed(api, unique_name("Before"))
    old_db = done["databaseName"]
    # Someone (an ODS/API) is connected to the database; the rename ends that session.
    session = psycopg.connect(pg.database_url(old_db), autocommit=True)
    new_name = unique_name("After")
    r = rename(api, done["id"], new_name)
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v2/dbInstances/{done['id']}"
    assert r.json()["status"] == "Pending_Rename"
    assert r.json()["pendingName"] == new_name
    renamed, _ = wait_for_instance(api, done["id"])
    assert renamed["status"] == "Completed", renamed
    assert renamed["name"] == new_name
    assert renamed["databaseName"] == db_prefix + new_name.replace(" ", "_")
    assert renamed["odsInstanceId"] == done["odsInstanceId"]
    assert renamed["pendingName"] is None
    assert not pg.exists(old_db)
    assert pg.exists(renamed["databaseName"])
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")  # its session was ended before the rename
    session.close()
    row = _dbo_row(admin_database, done["odsInstanceId"])
    assert row is not None
    assert row[0] == new_name
    assert _database_in(row[1], encryption_key) == renamed["databaseName"]
    job = api.get(f"/v2/jobs/{r.json()['jobId']}").json()
    assert (job["type"], job["status"]) == ("renameInstance", "Completed")


def test_a_rename_onto_an_existing_database_fails_and_changes_nothing(
    api: httpx.Client, admin_database: str, db_prefix: str, encryption_key: bytes
) -> None:
    done = create_completed(api, unique_name("Keep"))
    taken = unique_name("Taken By Hand")
    pg.create(db_prefix + taken.replace(" ", "_"), comment_text="someone else's")
    r = rename(api, done["id"], taken)
    assert r.status_code == 202
    failed, _ = wait_for_instance(api, done["id"])
    assert failed["status"] == "Rename_Failed"
    assert "already exists" in failed["error"]
    assert failed["name"] == done["name"]
    assert failed["databaseName"] == done["databaseName"]
    assert pg.exists(done["databaseName"])
    assert pg.comment(db_prefix + taken.replace(" ", "_")) == "someone else's"
    row = _dbo_row(admin_database, done["odsInstanceId"])
    assert row is not None
    assert row[0] == done["name"]
    assert _database_in(row[1], encryption_key) == done["databaseName"]
    # The old database still accepts connections.
    assert pg.query(done["databaseName"], "SELECT 1") == [(1,)]
    # A failed rename can be retried with another name.
    again = rename(api, done["id"], unique_name("Retry"))
    assert again.status_code == 202
    assert wait_for_instance(api, done["id"])[0]["status"] == "Completed"


def test_requests_while_an_operation_is_in_flight_are_refused_naming_it(
    api: httpx.Client, settings: Settings
) -> None:
    with pg.HeldCloneSlots(
        settings.clone_concurrency, settings.rabbitmq_url
    ):  # the create waits for a slot
        body = create(api, unique_name("Busy"))
        for response in (
            rename(api, body["id"], unique_name("Other")),
            api.delete(f"/v2/dbInstances/{body['id']}"),
        ):
            assert response.status_code == 409
            problem = response.json()
            assert problem["inFlightOperation"] == "create"
            assert problem["jobId"] == body["jobId"]
            assert body["jobId"] in problem["detail"]
    assert wait_for_instance(api, body["id"])[0]["status"] == "Completed"


def test_a_rename_to_a_name_in_use_is_a_conflict(api: httpx.Client) -> None:
    first = create_completed(api, unique_name("First"))
    second = create_completed(api, unique_name("Second"))
    for name in (first["name"], first["name"].lower(), first["name"].replace(" ", "_")):
        r = rename(api, second["id"], name)
        assert r.status_code == 409, name
        assert r.json()["conflictingInstanceId"] == first["id"]
    r = rename(api, second["id"], second["name"])
    assert r.status_code == 409
    bad = rename(api, second["id"], "no-hyphens")
    assert bad.status_code == 422
    assert "name" in bad.json()["errors"]
    assert api.put("/v2/dbInstances/999999999", json={"name": "Nobody"}).status_code == 404


def _seed_dbo_links(admin_database: str, ods_id: int, other_ods_id: int) -> dict[str, int]:
    """API clients linked the way Ed-Fi's Admin API links them: a vendor and its application, a
    client of that application with an access token it was issued, an ownership token and an
    education-organization link; one client linked to this instance only, one shared."""
    with psycopg.connect(pg.database_url(admin_database), autocommit=True) as c:

        def one(statement: str, *args: object) -> int:
            row = c.execute(statement, args).fetchone()
            assert row is not None
            return int(row[0])

        vendor = one("INSERT INTO dbo.vendors (vendorname) VALUES ('Acme') RETURNING vendorid")
        application = one(
            "INSERT INTO dbo.applications (applicationname, vendor_vendorid, claimsetname) "
            "VALUES ('Acme SIS', %s, 'SIS Vendor') RETURNING applicationid",
            vendor,
        )
        edorg = one(
            "INSERT INTO dbo.applicationeducationorganizations (educationorganizationid, "
            "application_applicationid) VALUES (255901, %s) "
            "RETURNING applicationeducationorganizationid",
            application,
        )
        token = one(
            "INSERT INTO dbo.ownershiptokens (description) VALUES ('acme') "
            "RETURNING ownershiptokenid"
        )

        def client(key: str) -> int:
            cid = one(
                "INSERT INTO dbo.apiclients (key, secret, name, isapproved, usesandbox, "
                "sandboxtype, application_applicationid) "
                "VALUES (%s, 's', %s, true, false, 0, %s) RETURNING apiclientid",
                key,
                key,
                application,
            )
            c.execute(
                "INSERT INTO dbo.clientaccesstokens (id, expiration, scope, "
                "apiclient_apiclientid) VALUES (gen_random_uuid(), now() + interval '1 hour', "
                "'255901', %s)",
                (cid,),
            )
            c.execute(
                "INSERT INTO dbo.apiclientownershiptokens (apiclient_apiclientid, "
                "ownershiptoken_ownershiptokenid) VALUES (%s, %s)",
                (cid, token),
            )
            c.execute(
                "INSERT INTO dbo.apiclientapplicationeducationorganizations "
                "(apiclient_apiclientid, applicationedorg_applicationedorgid) VALUES (%s, %s)",
                (cid, edorg),
            )
            return cid

        only = client(f"only-{ods_id}")
        shared = client(f"shared-{ods_id}")
        for cid, oid in ((only, ods_id), (shared, ods_id), (shared, other_ods_id)):
            c.execute(
                "INSERT INTO dbo.apiclientodsinstances (apiclient_apiclientid, "
                "odsinstance_odsinstanceid) VALUES (%s, %s)",
                (cid, oid),
            )
        c.execute(
            "INSERT INTO dbo.odsinstancecontexts (odsinstance_odsinstanceid, contextkey, "
            "contextvalue) VALUES (%s, 'schoolYear', '2027')",
            (ods_id,),
        )
        c.execute(
            "INSERT INTO dbo.odsinstancederivatives (odsinstance_odsinstanceid, derivativetype, "
            "connectionstring) VALUES (%s, 'ReadReplica', 'x')",
            (ods_id,),
        )
    return {"only": only, "shared": shared, "application": application, "vendor": vendor}


def test_delete_drops_the_database_and_removes_the_dbo_rows_in_edfis_order(
    api: httpx.Client, admin_database: str
) -> None:
    """On Ed-Fi's own schema (no cascades from access tokens or client links): a delete with a
    client linked Admin-API-style, access token included, ends Deleted with every row that
    referenced that client gone, and a client another instance uses kept."""
    done = create_completed(api, unique_name("Doomed"))
    neighbour = create_completed(api, unique_name("Neighbour"))
    ods_id, other = done["odsInstanceId"], neighbour["odsInstanceId"]
    clients = _seed_dbo_links(admin_database, ods_id, other)

    r = api.delete(f"/v2/dbInstances/{done['id']}")
    assert r.status_code == 202
    assert r.json()["status"] == "Pending_Delete"
    deleted, _ = wait_for_instance(api, done["id"])
    assert deleted["status"] == "Deleted", deleted
    assert not pg.exists(done["databaseName"])

    def count(sql: str, *args: object) -> int:
        return int(pg.query(admin_database, sql, args)[0][0])

    assert count("SELECT count(*) FROM dbo.odsinstances WHERE odsinstanceid = %s", ods_id) == 0
    for table in ("odsinstancecontexts", "odsinstancederivatives", "apiclientodsinstances"):
        assert (
            count(f"SELECT count(*) FROM dbo.{table} WHERE odsinstance_odsinstanceid = %s", ods_id)
            == 0
        ), table
    for table in (
        "apiclients",
        "clientaccesstokens",
        "apiclientownershiptokens",
        "apiclientapplicationeducationorganizations",
    ):
        column = "apiclientid" if table == "apiclients" else "apiclient_apiclientid"
        only = count(f"SELECT count(*) FROM dbo.{table} WHERE {column} = %s", clients["only"])
        shared = count(f"SELECT count(*) FROM dbo.{table} WHERE {column} = %s", clients["shared"])
        assert (only, shared) == (0, 1), table
    assert (
        count(
            "SELECT count(*) FROM dbo.apiclientodsinstances WHERE apiclient_apiclientid = %s",
            clients["shared"],
        )
        == 1
    )
    # The application and vendor stay, as Ed-Fi's Admin API leaves them.
    assert count(
        "SELECT count(*) FROM dbo.applications WHERE applicationid = %s", clients["application"]
    )
    assert count("SELECT count(*) FROM dbo.vendors WHERE vendorid = %s", clients["vendor"])
    assert count("SELECT count(*) FROM dbo.odsinstances WHERE odsinstanceid = %s", other) == 1
    assert pg.exists(neighbour["databaseName"])

    # The row stays for audit; further requests on it are not found; the name is free again.
    assert api.get(f"/v2/dbInstances/{done['id']}").json()["status"] == "Deleted"
    assert api.delete(f"/v2/dbInstances/{done['id']}").status_code == 404
    assert rename(api, done["id"], unique_name("Ghost")).status_code == 404
    reused = create(api, done["name"])
    assert wait_for_instance(api, reused["id"])[0]["status"] == "Completed"


def test_a_database_that_is_not_the_instances_is_not_dropped(
    api: httpx.Client, admin_database: str
) -> None:
    done = create_completed(api, unique_name("Swapped"))
    # Someone replaced the instance's database with their own under the same name.
    pg.drop(done["databaseName"])
    pg.create(done["databaseName"], comment_text="not yours")
    r = api.delete(f"/v2/dbInstances/{done['id']}")
    assert r.status_code == 202
    failed, _ = wait_for_instance(api, done["id"])
    assert failed["status"] == "Delete_Failed"
    assert "left untouched" in failed["error"]
    assert pg.comment(done["databaseName"]) == "not yours"
    assert _dbo_row(admin_database, done["odsInstanceId"]) is not None
    job = api.get(f"/v2/jobs/{r.json()['jobId']}").json()
    assert (job["status"], job["error"]) == ("Failed", failed["error"])


def test_deleting_an_instance_whose_database_is_already_gone_succeeds(
    api: httpx.Client,
) -> None:
    done = create_completed(api, unique_name("Vanished"))
    pg.drop(done["databaseName"])
    assert api.delete(f"/v2/dbInstances/{done['id']}").status_code == 202
    assert wait_for_instance(api, done["id"])[0]["status"] == "Deleted"


def test_deleting_a_failed_create_leaves_the_foreign_database_alone(
    api: httpx.Client, db_prefix: str
) -> None:
    name = unique_name("Collided")
    database = db_prefix + name.replace(" ", "_")
    pg.create(database, comment_text="theirs")
    failed, _ = wait_for_instance(api, create(api, name)["id"])
    assert failed["status"] == "Error"
    assert rename(api, failed["id"], unique_name("Nope")).status_code == 409
    assert api.delete(f"/v2/dbInstances/{failed['id']}").status_code == 202
    assert wait_for_instance(api, failed["id"])[0]["status"] == "Deleted"
    assert pg.comment(database) == "theirs"
