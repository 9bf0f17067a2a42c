"""Errors reach the caller as problem details; a lost admin database is a 503, not a 500."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from services.gateway import problems


def _app(exc: Exception) -> TestClient:
    app = FastAPI()
    problems.install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise exc

    return TestClient(app, raise_server_exceptions=False)


def test_an_unreachable_admin_database_is_503_with_retry_after() -> None:
    r = _app(OperationalError("SELECT 1", None, ConnectionRefusedError())).get("/boom")
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == "2"
    assert "nothing was changed" in r.json()["detail"]


def test_a_connection_lost_mid_query_is_503() -> None:
    exc = DBAPIError("SELECT 1", None, Exception("connection closed"), connection_invalidated=True)
    assert _app(exc).get("/boom").status_code == 503


def test_other_database_errors_are_500_without_details() -> None:
    r = _app(IntegrityError("INSERT", None, Exception("secret detail"))).get("/boom")
    assert r.status_code == 500
    assert "secret detail" not in r.text


def test_unknown_routes_are_problem_details() -> None:
    r = _app(RuntimeError()).get("/nowhere")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
