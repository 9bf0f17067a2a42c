"""The events API against the real services: what a create does arrives on `GET /v2/events`
within a second of its commit, with ids; a client that reconnects with Last-Event-ID gets every
change it missed, once; a second gateway replica streams the same changes; a job's own stream
ends with the job; a client that stops reading is dropped without holding up the others. That
the events routes are in the OpenAPI document is tests/contract/test_events.py."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime

import httpx
import jwt
import psycopg
import pytest

from tests.conftest import unique_name
from tests.support.flows import create
from tests.support.polling import wait_for_instance
from tests.support.sse import Event, EventStream
from tests.support.stack import Stack, free_port

pytestmark = pytest.mark.e2e


def _headers(stack: Stack, scope: str = "edfi_admin_api/full_access") -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token(scope)}"}


def _stream(stack: Stack, path: str = "/v2/events", **kwargs: object) -> EventStream:
    return EventStream(f"{stack.url}{path}", _headers(stack), **kwargs)  # type: ignore[arg-type]


def _job_is(job_id: str, status: str) -> Callable[[Event], bool]:
    return lambda e: e.event == "job" and e.data["id"] == job_id and e.data["status"] == status


def _instance_is(instance_id: int, status: str) -> Callable[[Event], bool]:
    return lambda e: (
        e.event == "instance" and e.data["id"] == instance_id and e.data["status"] == status
    )


def _of_instance(instance_id: int, status: str | None = None) -> Callable[[Event], bool]:
    def wanted(e: Event) -> bool:
        if e.event == "instance":
            return bool(e.data["id"] == instance_id and status in (None, e.data["status"]))
        return bool(
            e.event == "job"
            and e.data["instanceId"] == instance_id
            and status in (None, e.data["status"])
        )

    return wanted


def _when(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_a_create_is_streamed_as_it_happens_within_a_second(
    stack: Stack, api: httpx.Client
) -> None:
    with _stream(stack) as events:
        ready = events.next()
        assert ready is not None and ready.event == "ready" and ready.id is not None
        assert events.content_type is not None
        assert events.content_type.startswith("text/event-stream")
        accepted = create(api, unique_name("Streamed"))
        done = events.until(
            lambda e: (
                e.event == "job"
                and e.data["id"] == accepted["jobId"]
                and e.data["status"] == "Completed"
            )
        )
        instance = events.until(
            lambda e: (
                e.event == "instance"
                and e.data["id"] == accepted["id"]
                and e.data["status"] == "Completed"
            )
        )
    ours = [e for e in events.seen if e.event == "job" and e.data["id"] == accepted["jobId"]]
    statuses = [e.data["status"] for e in ours]
    # Running is shown only for a create that lasts longer than the provisioner's progress
    # delay (0.5 s); a faster one goes from Pending to Completed, its start recorded with it.
    assert statuses[0] == "Pending" and statuses[-1] == "Completed", statuses
    assert set(statuses) <= {"Pending", "Running", "Completed"}, statuses
    assert done.data["startedAt"] is not None and done.data["attempts"] == 1
    assert done.data["progressPercent"] == 100
    assert instance.data["odsInstanceId"] is not None
    # Within a second of the status service's commit (finishedAt is that transaction's time).
    assert done.arrived - _when(done.data["finishedAt"]) < 1.0
    ids = [e.id for e in events.seen if e.id is not None]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    # What the stream says is what the API says.
    assert api.get(f"/v2/jobs/{accepted['jobId']}").json() == done.data


def test_a_reconnect_with_last_event_id_misses_nothing(stack: Stack, api: httpx.Client) -> None:
    with _stream(stack) as first:
        ready = first.next()
        assert ready is not None and ready.event == "ready"
        last = ready.id
    # While nobody listens: two creates run to completion.
    made = [create(api, unique_name("Missed")) for _ in range(2)]
    for body in made:
        assert wait_for_instance(api, body["id"])[0]["status"] == "Completed"
    with _stream(stack, last_event_id=last) as resumed:
        for body in made:
            resumed.until(_job_is(body["jobId"], "Completed"))
            resumed.until(_instance_is(body["id"], "Completed"))
        replayed = list(resumed.seen)
    assert all(e.event in ("job", "instance") for e in replayed), "no `ready` on a resume"
    ids = [e.id or 0 for e in replayed]
    assert last is not None
    assert ids == sorted(ids) and len(ids) == len(set(ids)) and ids[0] > last
    for body in made:
        statuses = [
            e.data["status"] for e in replayed if e.event == "job" and e.data["id"] == body["jobId"]
        ]
        assert statuses[0] == "Pending" and statuses[-1] == "Completed", statuses


def test_a_last_event_id_no_longer_kept_is_answered_with_a_reset(stack: Stack) -> None:
    with _stream(stack, last_event_id=10**15) as events:
        reset = events.next()
    assert reset is not None and reset.event == "reset"
    assert "lastEventId" in reset.data and reset.id == reset.data["lastEventId"]
    refused = httpx.get(
        f"{stack.url}/v2/events",
        headers={**_headers(stack), "Last-Event-ID": "yesterday"},
        timeout=10,
    )
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "Last-Event-ID" in refused.json()["errors"]


def test_a_read_only_client_may_listen_and_a_stranger_may_not(stack: Stack) -> None:
    url = f"{stack.url}/v2/events"
    with EventStream(url, _headers(stack, "edfi_admin_api/read_only")) as events:
        first = events.next()
        assert first is not None and first.event == "ready"
    with EventStream(url, {}) as anonymous:
        assert anonymous.status == 401


def test_a_jobs_stream_follows_it_and_ends_with_it(stack: Stack, api: httpx.Client) -> None:
    accepted = create(api, unique_name("Followed"))
    with _stream(stack, f"/v2/jobs/{accepted['jobId']}/events") as job:
        statuses = []
        while (event := job.next(30)) is not None:
            assert event.event == "job" and event.data["id"] == accepted["jobId"]
            statuses.append(event.data["status"])
        assert job.ended.wait(5)
    assert statuses[-1] == "Completed", statuses
    # An ended job: its state, and the stream ends at once.
    started = time.monotonic()
    with _stream(stack, f"/v2/jobs/{accepted['jobId']}/events") as ended:
        only = ended.next()
        assert only is not None and only.data["status"] == "Completed"
        assert ended.next() is None
    assert time.monotonic() - started < 3
    missing = httpx.get(
        f"{stack.url}/v2/jobs/{uuid.uuid4()}/events", headers=_headers(stack), timeout=10
    )
    assert missing.status_code == 404


@pytest.fixture
def second_gateway(stack: Stack) -> Iterator[str]:
    """Another gateway replica on the same admin database and broker."""
    url = stack.start_gateway("gateway-2")
    try:
        yield url
    finally:
        assert stack.stop("gateway-2") == 0


def test_two_gateway_replicas_stream_the_same_changes(
    stack: Stack, api: httpx.Client, second_gateway: str
) -> None:
    headers = _headers(stack)
    with (
        EventStream(f"{stack.url}/v2/events", headers) as one,
        EventStream(f"{second_gateway}/v2/events", headers) as two,
    ):
        for stream in (one, two):
            first = stream.next()
            assert first is not None and first.event == "ready"
        accepted = create(api, unique_name("Replicated"))  # through the first gateway
        done = [s.until(_of_instance(accepted["id"], "Completed")) for s in (one, two)]
    assert done[1].arrived - _when(done[1].data["lastModifiedDate"]) < 1.0
    ours = [
        [
            (e.id, e.event, e.data)
            for e in s.seen
            if e.event != "ready"
            and (
                (e.event == "instance" and e.data["id"] == accepted["id"])
                or (e.event == "job" and e.data["instanceId"] == accepted["id"])
            )
        ]
        for s in (one, two)
    ]
    assert ours[0] == ours[1] and ours[0]


def _flood(admin_url: str, job_id: uuid.UUID, changes: int, size: int) -> None:
    """Many changes of one (maintenance) job, each a large progress message."""
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(
            "INSERT INTO edfi_im.jobs (id, type, status, data, attempts, created_at, recoveries) "
            "VALUES (%s, 'prune', 'Running', '{}', 0, now(), 0)",
            (job_id,),
        )
        for k in range(changes):
            c.execute(
                "UPDATE edfi_im.jobs SET progress_message = %s, progress_percent = %s "
                "WHERE id = %s",
                (f"{k:05d} " + "x" * size, k % 100, job_id),
            )


def _metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_a_client_that_stops_reading_is_dropped_and_others_keep_up(stack: Stack) -> None:
    port = free_port()
    stack.start(
        "gateway-slow",
        "gateway",
        EDFI_IM_GATEWAY_PORT=str(port),
        EDFI_IM_EVENTS_SEND_TIMEOUT_SECONDS="2",
        EDFI_IM_EVENTS_BUFFER_SIZE="50",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
        # A client that asks for the stream and never reads a byte of it.
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", port))
        token = stack.token()
        slow.sendall(
            f"GET /v2/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )
        job_id = uuid.uuid4()
        with EventStream(f"{url}/v2/events", _headers(stack)) as fast:
            assert fast.next() is not None
            _flood(stack.env["EDFI_IM_ADMIN_DATABASE_URL"], job_id, changes=400, size=16_000)
            last = fast.until(
                lambda e: (
                    e.event == "job"
                    and e.data["id"] == str(job_id)
                    and (e.data["progressMessage"] or "").startswith("00399")
                ),
                timeout=30,
            )
            got = [
                int(e.data["progressMessage"][:5])
                for e in fast.seen
                if e.event == "job" and e.data["id"] == str(job_id) and e.data["progressMessage"]
            ]
        # The reader that kept reading got every change, in order, while the other stalled.
        assert got == list(range(400)), got[:5]
        assert last.data["progressPercent"] == 99
        deadline = time.monotonic() + 20
        while _metric(url, "edfi_im_event_streams_dropped_total") < 1:
            assert time.monotonic() < deadline, "the stalled stream was never dropped"
            time.sleep(0.5)
        assert stack.logged_since_start(
            "gateway-slow", "event stream closed: its client took no data in time"
        )
        slow.close()
    finally:
        assert stack.stop("gateway-slow") == 0


def test_a_stream_ends_when_its_token_expires(stack: Stack) -> None:
    now = int(time.time())
    claims = {
        "iss": "edfi-instance-manager",
        "aud": "edfi-instance-manager",
        "sub": "short-lived",
        "client_id": "short-lived",
        "scope": "edfi_admin_api/read_only",
        "iat": now,
        "nbf": now,
        "exp": now + 3,
    }
    token = jwt.encode(claims, stack.env["EDFI_IM_JWT_SIGNING_KEY"], algorithm="HS256")
    with EventStream(f"{stack.url}/v2/events", {"Authorization": f"Bearer {token}"}) as events:
        first = events.next()
        assert first is not None and first.event == "ready"
        assert events.ended.wait(10), "the stream outlived its token"
    assert time.time() >= now + 3


def test_a_gateway_told_to_stop_ends_its_streams_and_exits_at_once(stack: Stack) -> None:
    """Streams never end by themselves: without ending them, the graceful shutdown would wait
    for them until its timeout (EDFI_IM_GRACEFUL_TIMEOUT_SECONDS, 20 s here)."""
    url = stack.start_gateway("gateway-stopping")
    with EventStream(f"{url}/v2/events", _headers(stack)) as events:
        assert events.next() is not None
        started = time.monotonic()
        assert stack.stop("gateway-stopping") == 0
        assert events.ended.wait(5)
    assert time.monotonic() - started < 10
