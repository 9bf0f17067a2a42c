"""`GET /v2/events` and `GET /v2/jobs/{id}/events`: Server-Sent Events of the caller's tenant's
job and instance changes, each with the number of its change (`id:`), so a client that
reconnects with `Last-Event-ID` gets every change it missed that is still kept."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, cast

import anyio
from fastapi import APIRouter, Header, Query, Request
from pydantic import Field
from sqlalchemy import select
from starlette.responses import StreamingResponse
from starlette.types import Send

from services.admin_db import changes
from services.admin_db.changes import JOB, Change
from services.admin_db.tables import jobs
from services.gateway.auth import Caller
from services.gateway.feed import ChangeFeed
from services.gateway.problems import ProblemError, validation_problem
from services.gateway.schemas import CamelModel, DbInstance, Job
from services.gateway.state import request_tenant
from services.gateway.views import instance_out, job_out
from services.rules.states import is_terminal
from services.runtime.logging import get_logger
from services.runtime.metrics import EVENT_STREAMS, EVENT_STREAMS_DROPPED

log = get_logger(__name__)
router = APIRouter(prefix="/v2", tags=["events"])

PAGE = 100
HISTORY_LIMIT = 1000
EXAMPLE = (
    "retry: 3000\n\n"
    'event: ready\nid: 41\ndata: {"lastEventId": 41}\n\n'
    'event: job\nid: 42\ndata: {"id": "…", "status": "Running", "progressPercent": 40, '
    '"progressMessage": "Cloning EdFi_Ods_Minimal_Template", …}\n\n'
    'event: instance\nid: 43\ndata: {"id": 7, "status": "Completed", …}\n\n'
    ": heartbeat\n\n"
)
STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "A Server-Sent Events stream (`text/event-stream`). Events: `job` and `instance` "
            "(data: the job or instance as `GET /v2/jobs/{id}` and `GET /v2/dbInstances/{id}` "
            "show it, after the change), `ready` (the stream's starting point, when no "
            "`Last-Event-ID` was given), `reset` (changes after the given `Last-Event-ID` are no "
            "longer kept: reload, then go on from this event's id). A comment line every "
            "EDFI_IM_EVENTS_HEARTBEAT_SECONDS keeps idle streams open."
        ),
        "content": {"text/event-stream": {"schema": {"type": "string"}, "example": EXAMPLE}},
    },
    404: {"content": {"application/problem+json": {}}},
    422: {"content": {"application/problem+json": {}}},
    503: {"content": {"application/problem+json": {}}},
}
LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        description="Resume after this event (browsers send it when they reconnect)",
    ),
]
LastEventIdQuery = Annotated[
    str | None,
    Query(
        alias="lastEventId",
        description="The same as the Last-Event-ID header, for clients that cannot set headers",
    ),
]


class EventStreamResponse(StreamingResponse):
    """Server-Sent Events whose client must keep taking them: a send that the client's
    connection does not accept within the timeout ends the stream (the gateway never buffers
    more than one event and the socket's buffer for a client; the client may resume)."""

    media_type = "text/event-stream"
    open_streams = 0  # in this process

    def __init__(self, content: AsyncIterator[str], send_timeout: float) -> None:
        super().__init__(
            content,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._send_timeout = send_timeout

    async def stream_response(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        EVENT_STREAMS.inc()
        EventStreamResponse.open_streams += 1
        try:
            async for chunk in self.body_iterator:
                data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
                with anyio.fail_after(self._send_timeout):
                    await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except TimeoutError:
            EVENT_STREAMS_DROPPED.inc()
            log.warning(
                "event stream closed: its client took no data in time",
                seconds=self._send_timeout,
            )
        finally:
            EVENT_STREAMS.dec()
            EventStreamResponse.open_streams -= 1
            # Closed now, not when it is collected: it stops following its feed (feed.py).
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                with anyio.CancelScope(shield=True):
                    await close()


def jobs_query(job_id: uuid.UUID) -> Any:
    return select(jobs.c.id).where(jobs.c.id == job_id)


def frame(event: str, event_id: int | None, data: Any) -> str:
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return head + f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


def shown(change: Change) -> dict[str, Any]:
    """The change's row as the API shows it (GET /v2/jobs/{id}, GET /v2/dbInstances/{id})."""
    row = cast(Any, _Row(change.body))
    model: Job | DbInstance = job_out(row) if change.kind == JOB else instance_out(row)
    return model.model_dump(mode="json", by_alias=True)


class _Row:
    """A change's JSON body read like a database row (attribute access)."""

    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body

    def __getattr__(self, name: str) -> Any:
        return self._body.get(name)


def _feed(request: Request) -> ChangeFeed:
    feeds: dict[str | None, ChangeFeed] = request.app.state.feeds
    feed = feeds.get(request_tenant(request).tenant)
    if feed is None:
        raise ProblemError(
            501,
            "Not implemented",
            "event streams need the change feed of a PostgreSQL admin database (its triggers and "
            "LISTEN/NOTIFY); this tenant's admin database is on SQL Server, which has none yet: "
            "poll GET /v2/jobs/{id} instead",
        )
    if EventStreamResponse.open_streams >= request_tenant(request).settings.events_max_streams:
        raise ProblemError(
            503,
            "Too many streams",
            "this gateway serves as many event streams as it may; try again shortly",
            headers={"Retry-After": "5"},
        )
    return feed


def _last_event_id(header: str | None, query: str | None) -> int | None:
    value = header if header is not None else query
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise validation_problem("Last-Event-ID", "must be the id of an event of this stream")
    return int(value)


async def _gone_since(feed: ChangeFeed, cursor: int) -> str | None:
    """Why a stream cannot resume after `cursor` (None: every change since is still kept)."""
    async with feed.engine.connect() as conn:
        newest = await changes.latest(conn)
        first = await changes.oldest(conn)
    if cursor > newest:
        return f"no event {cursor} was ever sent here"
    if cursor < newest and (first is None or first > cursor + 1):
        return "events after it are no longer kept"
    return None


def _token_expiry(request: Request) -> float:
    """When the caller's token expires: its stream ends then (the client reconnects with a
    fresh token and its Last-Event-ID)."""
    caller: Caller | None = getattr(request.state, "caller", None)
    expiry = caller.expires_at if caller is not None else None
    return expiry if expiry is not None else float("inf")


async def _follow(
    feed: ChangeFeed,
    cursor: int,
    heartbeat: float,
    wanted: str | None = None,
    until: float = float("inf"),
) -> AsyncIterator[tuple[int, Change | None]]:
    """(cursor, change) for each change after `cursor` (only `wanted`'s, if given), and
    (cursor, None) after each quiet heartbeat interval; ends when the feed closes or at
    `until` (a wall-clock time: the token's expiry)."""
    while not feed.closing.is_set() and time.time() < until:
        batch = await feed.read(cursor, PAGE)
        if not batch:
            if feed.latest > cursor and cursor < feed.floor:
                cursor = feed.floor  # pruned while it was read: nothing left to give
                continue
            quiet = min(heartbeat, max(0.0, until - time.time()))
            if not await feed.wait(cursor, quiet) and not feed.closing.is_set():
                yield cursor, None
            continue
        for change in batch:
            cursor = change.id
            if wanted is None or change.entity_id == wanted:
                yield cursor, change


@router.get(
    "/events",
    response_class=EventStreamResponse,
    status_code=200,
    responses=STREAM,
    summary="Stream every change of the tenant's jobs and instances (Server-Sent Events)",
)
async def events(
    request: Request,
    last_event_id: LastEventId = None,
    last_event_id_query: LastEventIdQuery = None,
) -> EventStreamResponse:
    feed = _feed(request)
    settings = request_tenant(request).settings
    start = _last_event_id(last_event_id, last_event_id_query)
    reset = None if start is None else await _gone_since(feed, start)

    async def stream() -> AsyncIterator[str]:
        yield "retry: 3000\n\n"
        async with feed.following():
            cursor = start
            if cursor is None or reset is not None:
                cursor = feed.latest
                if reset is not None:
                    yield frame("reset", cursor, {"lastEventId": cursor, "reason": reset})
                else:
                    yield frame("ready", cursor, {"lastEventId": cursor})
            async for _, change in _follow(
                feed, cursor, settings.events_heartbeat_seconds, until=_token_expiry(request)
            ):
                if change is None:
                    yield ": heartbeat\n\n"
                else:
                    yield frame(change.kind, change.id, shown(change))

    return EventStreamResponse(stream(), settings.events_send_timeout_seconds)


@router.get(
    "/jobs/{job_id}/events",
    response_class=EventStreamResponse,
    status_code=200,
    responses=STREAM,
    summary="Stream one job's changes until it ends (at once for a job that has ended)",
)
async def job_events(
    job_id: uuid.UUID,
    request: Request,
    last_event_id: LastEventId = None,
    last_event_id_query: LastEventIdQuery = None,
) -> EventStreamResponse:
    feed = _feed(request)
    settings = request_tenant(request).settings
    start = _last_event_id(last_event_id, last_event_id_query)
    row, now = await changes.job_with_cursor(feed.engine, job_id)
    if row is None:
        raise ProblemError(404, "Not found", f"no job with id {job_id}")
    resume = start is not None and await _gone_since(feed, start) is None
    ended = is_terminal(row.status)
    if resume and ended and start is not None:
        async with feed.engine.connect() as conn:
            missed = await changes.after(conn, start, 1, str(job_id))
        if not missed:  # it ended before the client's last event: nothing more will come
            return EventStreamResponse(_retry_only(), settings.events_send_timeout_seconds)

    async def stream() -> AsyncIterator[str]:
        yield "retry: 3000\n\n"
        if resume and start is not None:
            cursor = start
        else:
            # The job as it is, then every change after that snapshot.
            cursor = now
            yield frame(JOB, now, job_out(row).model_dump(mode="json", by_alias=True))
            if ended:
                return
        async with feed.following():
            async for _, change in _follow(
                feed,
                cursor,
                settings.events_heartbeat_seconds,
                str(job_id),
                until=_token_expiry(request),
            ):
                if change is None:
                    yield ": heartbeat\n\n"
                    continue
                yield frame(change.kind, change.id, shown(change))
                if is_terminal(change.body.get("status", "")):
                    return

    return EventStreamResponse(stream(), settings.events_send_timeout_seconds)


class JobStep(CamelModel):
    at: datetime = Field(description="When the change was committed")
    status: str
    progress_message: str | None
    progress_percent: int | None
    attempts: int
    error: str | None
    worker: str | None


@router.get(
    "/jobs/{job_id}/history",
    response_model=list[JobStep],
    responses={404: {"content": {"application/problem+json": {}}}},
    summary="A job's steps with their times, as far as its changes are kept",
)
async def job_history(job_id: uuid.UUID, request: Request) -> list[JobStep]:
    engine = request_tenant(request).engine
    async with engine.connect() as conn:
        if (await conn.execute(jobs_query(job_id))).first() is None:
            raise ProblemError(404, "Not found", f"no job with id {job_id}")
        steps = await changes.history(conn, str(job_id), HISTORY_LIMIT)
    return [
        JobStep(
            at=at,
            status=change.body["status"],
            progress_message=change.body.get("progress_message"),
            progress_percent=change.body.get("progress_percent"),
            attempts=change.body.get("attempts") or 0,
            error=change.body.get("error"),
            worker=change.body.get("worker"),
        )
        for at, change in steps
        if change.kind == JOB
    ]


async def _retry_only() -> AsyncIterator[str]:
    yield "retry: 3000\n\n"
