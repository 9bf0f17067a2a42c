"""Errors reach the caller as problem details; a lost admin database is a 503, not a 500."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from services.gateway import problems


async def _get(exc: Exception, path: str = "/boom") -> httpx.Response:
    app = FastAPI()
    problems.install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise exc

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        return await client.get(path)


async def test_an_unreachable_admin_database_is_503_with_retry_after() -> None:
    r = await _get(OperationalError("SELECT 1", None, ConnectionRefusedError()))
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == "2"
    assert "nothing was changed" in r.json()["detail"]


async def test_a_connection_lost_mid_query_is_503() -> None:
    exc = DBAPIError("SELECT 1", None, Exception("connection closed"), connection_invalidated=True)
    assert (await _get(exc)).status_code == 503


async def test_a_refused_write_says_why_without_the_statement_or_its_values() -> None:
    """A constraint's refusal is 409 with its meaning (issue 13: no failure without a reason);
    the SQL statement and its parameters (which may hold secrets) are never shown."""
    exc = IntegrityError(
        "INSERT INTO dbo.odsinstances VALUES (%(cs)s)",
        {"cs": "password=hunter2"},
        Exception("duplicate key value violates unique constraint"),
    )
    r = await _get(exc)
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert "duplicate key value violates unique constraint" in r.json()["detail"]
    assert "hunter2" not in r.text and "INSERT" not in r.text


async def test_other_database_errors_are_500_without_the_statement() -> None:
    exc = DBAPIError("SELECT secret FROM t", {"p": "hunter2"}, Exception("boom"))
    r = await _get(exc)
    assert r.status_code == 500
    assert "hunter2" not in r.text and "SELECT" not in r.text


async def test_unknown_routes_are_problem_details() -> None:
    r = await _get(RuntimeError(), "/nowhere")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("loc", "field"),
    [
        (("body", "trigger", "cron", "cron"), "trigger.cron"),
        (("body", "trigger", "interval", "intervalSeconds"), "trigger.intervalSeconds"),
        (("body", "trigger"), "trigger"),
        (("body", "job", "type"), "job.type"),
        (("query", "limit"), "limit"),
        (("body",), "body"),
    ],
)
def test_field_names_leave_out_the_tag_of_a_union(loc: tuple[str, ...], field: str) -> None:
    assert problems._field_name(loc) == field
