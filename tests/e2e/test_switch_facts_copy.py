"""What Ed-Fi hosts asked for that no peer has, against the real services: the kill switch
(instance management off, or only its destructive operations), an instance's database facts
read at request time (and an answer without them when the ODS server is slow), and the copy of
an instance (school-year rollover), refused while the source has sessions unless asked."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psycopg
import pytest

from services.rules.marker import Marker
from tests.conftest import unique_name
from tests.support import pg
from tests.support.flows import create, create_completed
from tests.support.polling import problem as _problem
from tests.support.polling import wait_for_instance
from tests.support.stack import Stack, free_port

pytestmark = pytest.mark.e2e


@contextmanager
def gateway(stack: Stack, name: str, **env: str) -> Iterator[httpx.Client]:
    """A second gateway on the same admin database and broker, with settings of its own."""
    port = free_port()
    stack.start(name, "gateway", EDFI_IM_GATEWAY_PORT=str(port), **env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, stack.log(name).read_text()[-2000:]
            time.sleep(0.2)
        headers = {"Authorization": f"Bearer {stack.token()}"}
        with httpx.Client(base_url=url, headers=headers, timeout=15) as client:
            yield client
    finally:
        stack.stop(name)


# --- the kill switch -----------------------------------------------------------------------------


def test_with_instance_management_off_nothing_is_accepted_and_reads_still_work(
    stack: Stack, api: httpx.Client
) -> None:
    existing = create_completed(api, unique_name("Before switch"))
    with gateway(stack, "gateway-off", EDFI_IM_INSTANCE_MANAGEMENT_ENABLED="false") as off:
        name = unique_name("Switched off")
        body = _problem(
            off.post("/v2/dbInstances", json={"name": name, "databaseTemplate": "Minimal"}), 403
        )
        assert "EDFI_IM_INSTANCE_MANAGEMENT_ENABLED" in body["detail"]
        assert body["setting"] == "EDFI_IM_INSTANCE_MANAGEMENT_ENABLED"
        _problem(off.delete(f"/v2/dbInstances/{existing['id']}"), 403)
        _problem(off.put(f"/v2/dbInstances/{existing['id']}", json={"name": name}), 403)
        _problem(off.post("/adminconsole/odsInstances", json={"name": name}), 403)
        # Ed-Fi's routes answer in Ed-Fi's shape, under Admin API's key for it.
        r = off.post("/v2/odsInstances/manage", json={"name": name, "databaseTemplate": "Minimal"})
        assert r.status_code == 400, r.text
        [message] = r.json()["errors"]["OdsInstance"]
        assert "EDFI_IM_INSTANCE_MANAGEMENT_ENABLED" in message
        r = off.post("/v3/dataStores/manage", json={"name": name, "databaseTemplate": "Minimal"})
        assert "EDFI_IM_INSTANCE_MANAGEMENT_ENABLED" in r.json()["errors"]["dataStore"][0]
        # Reads go on.
        assert off.get(f"/v2/dbInstances/{existing['id']}").json()["status"] == "Completed"
        assert off.get("/v2/odsInstances/manage", params={"id": existing["id"]}).status_code == 200
    assert api.get("/v2/dbInstances", params={"limit": 500}).status_code == 200
    assert name not in {i["name"] for i in api.get("/v2/dbInstances", params={"limit": 500}).json()}
    assert api.get(f"/v2/dbInstances/{existing['id']}").json()["status"] == "Completed"


def test_with_destructive_operations_off_creates_go_on_renames_and_deletes_do_not(
    stack: Stack, api: httpx.Client
) -> None:
    existing = create_completed(api, unique_name("Kept"))
    with gateway(stack, "gateway-safe", EDFI_IM_DESTRUCTIVE_OPERATIONS_ENABLED="false") as safe:
        setting = "EDFI_IM_DESTRUCTIVE_OPERATIONS_ENABLED"
        assert setting in _problem(safe.delete(f"/v2/dbInstances/{existing['id']}"), 403)["detail"]
        renamed = safe.put(f"/v2/dbInstances/{existing['id']}", json={"name": unique_name("New")})
        assert setting in _problem(renamed, 403)["detail"]
        r = safe.delete(f"/v2/odsInstances/manage/{existing['id']}")
        assert r.status_code == 400 and setting in r.json()["errors"]["OdsInstance"][0]
        made = create(safe, unique_name("Still created"))
        done, _ = wait_for_instance(safe, made["id"])
        assert done["status"] == "Completed"
    after = api.get(f"/v2/dbInstances/{existing['id']}").json()
    assert after["status"] == "Completed" and after["name"] == existing["name"]
    assert pg.exists(existing["databaseName"])


# --- instance facts ------------------------------------------------------------------------------


def test_one_instance_shows_its_databases_size_state_and_sessions(api: httpx.Client) -> None:
    done = create_completed(api, unique_name("Facts"))
    facts = api.get(f"/v2/dbInstances/{done['id']}").json()["database"]
    assert facts["exists"] is True and facts["online"] is True
    assert facts["sizeBytes"] > 1_000_000 and facts["sessions"] == 0
    assert facts["unavailable"] is None and facts["readAt"]
    with psycopg.connect(pg.database_url(done["databaseName"])):
        assert api.get(f"/v2/dbInstances/{done['id']}").json()["database"]["sessions"] == 1
    # Lists never read the server.
    listed = api.get("/v2/dbInstances", params={"status": "Completed", "limit": 500}).json()
    assert all(i["database"] is None for i in listed)


@contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers (an ODS server that hangs)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for s in held:
            s.close()
        listener.close()


def test_when_the_ods_server_is_slow_the_instance_is_answered_without_facts(
    stack: Stack, api: httpx.Client
) -> None:
    done = create_completed(api, unique_name("Slow facts"))
    with (
        silent_server() as port,
        gateway(
            stack,
            "gateway-slow-ods",
            EDFI_IM_ODS_SERVER_URL=f"postgresql://postgres@127.0.0.1:{port}/postgres",
            EDFI_IM_INSTANCE_FACTS_TIMEOUT_SECONDS="0.5",
        ) as slow,
    ):
        started = time.monotonic()
        r = slow.get(f"/v2/dbInstances/{done['id']}")
        took = time.monotonic() - started
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "Completed" and body["name"] == done["name"]
        facts = body["database"]
        assert facts["exists"] is None and facts["sizeBytes"] is None
        assert "did not answer within 0.5 s" in facts["unavailable"]
        assert took < 10  # answered, not hung (the figure is the benchmark's business)
        assert stack.logged_since_start("gateway-slow-ods", "database facts not read")


# --- copy ---------------------------------------------------------------------------------------


def test_a_copy_with_a_session_on_the_source_is_refused_then_allowed_when_asked(
    api: httpx.Client, admin_database: str
) -> None:
    source = create_completed(api, unique_name("School year 2026"))
    with psycopg.connect(pg.database_url(source["databaseName"]), autocommit=True) as data:
        data.execute("CREATE TABLE rollover (school_year int)")
        data.execute("INSERT INTO rollover VALUES (2026)")
    name = unique_name("School year 2027")
    session = psycopg.connect(pg.database_url(source["databaseName"]), autocommit=True)
    try:
        r = api.post(f"/v2/dbInstances/{source['id']}/copy", json={"name": name})
        body = _problem(r, 409)
        assert body["sessions"] == 1 and "endSourceSessions" in body["detail"]
        assert name not in {
            i["name"] for i in api.get("/v2/dbInstances", params={"limit": 500}).json()
        }

        r = api.post(
            f"/v2/dbInstances/{source['id']}/copy",
            json={"name": name, "endSourceSessions": True, "instanceType": "Rollover"},
        )
        assert r.status_code == 202, r.text
        made = r.json()
        assert r.headers["location"] == f"/v2/dbInstances/{made['id']}"
        done, _ = wait_for_instance(api, made["id"])
        assert done["status"] == "Completed", done
        with pytest.raises(psycopg.OperationalError):  # the source's session was ended
            session.execute("SELECT 1")
    finally:
        session.close()
    # The copy has the source's data and a mark of its own; the source is unchanged.
    with psycopg.connect(pg.database_url(done["databaseName"])) as copy:
        assert copy.execute("SELECT school_year FROM rollover").fetchall() == [(2026,)]
    marker = Marker.parse(pg.comment(done["databaseName"]))
    assert marker is not None and marker.instance_id == made["id"]
    still = api.get(f"/v2/dbInstances/{source['id']}").json()
    assert still["status"] == "Completed" and still["name"] == source["name"]
    with psycopg.connect(pg.database_url(source["databaseName"])) as data:
        assert data.execute("SELECT school_year FROM rollover").fetchall() == [(2026,)]
    job = api.get(f"/v2/jobs/{done['jobId']}").json()
    assert job["type"] == "createInstance"
    assert job["parameters"]["copyOf"] == source["id"] and job["parameters"]["endSourceSessions"]
    [(instance_type,)] = pg.query(
        admin_database, "SELECT instancetype FROM dbo.odsinstances WHERE name = %s", (name,)
    )
    assert instance_type == "Rollover"


def test_a_copy_without_sessions_needs_no_permission_and_bad_sources_are_refused(
    api: httpx.Client,
) -> None:
    source = create_completed(api, unique_name("Quiet source"))
    r = api.post(f"/v2/dbInstances/{source['id']}/copy", json={"name": unique_name("Quiet copy")})
    assert r.status_code == 202, r.text
    done, _ = wait_for_instance(api, r.json()["id"])
    assert done["status"] == "Completed"
    _problem(api.post("/v2/dbInstances/2147483000/copy", json={"name": unique_name("X")}), 404)
    pending = create(api, unique_name("Not yet"))
    r = api.post(f"/v2/dbInstances/{pending['id']}/copy", json={"name": unique_name("Y")})
    if r.status_code != 202:  # unless it completed meanwhile
        assert "only a Completed instance can be copied" in _problem(r, 409)["detail"]
    taken = _problem(
        api.post(f"/v2/dbInstances/{source['id']}/copy", json={"name": source["name"]}), 409
    )
    assert "already exists" in taken["detail"]
