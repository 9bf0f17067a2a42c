"""RFC 9457 problem details for every error the gateway returns."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.rules.errors import (
    ConflictError,
    DisabledError,
    InvalidError,
    NotFoundError,
    RefusedError,
)
from services.runtime import dberrors
from services.runtime.logging import get_logger
from services.runtime.metrics import WRITES_REFUSED

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"


class ProblemError(Exception):
    """An error answered as problem details."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        errors: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra


def validation_problem(field: str, message: str) -> ProblemError:
    return ProblemError(
        422,
        "Validation failed",
        f"{field}: {message}",
        errors={field: [message]},
    )


def problem_response(request: Request, problem: ProblemError) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
    }
    if problem.errors:
        body["errors"] = problem.errors
    body.update(problem.extra)
    return JSONResponse(
        body, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )


# Discriminated unions put the chosen tag in an error's location (`trigger.cron.cron`): the field
# is named without it (`trigger.cron`).
UNION_TAGS: dict[str, frozenset[str]] = {"trigger": frozenset({"cron", "interval", "once"})}


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    named = [
        part
        for i, part in enumerate(parts)
        if not (i > 0 and part in UNION_TAGS.get(parts[i - 1], ()))
    ]
    return ".".join(named) or "body"


def _readable(err: Any) -> str:
    """pydantic's message, as written for people: without the "Value error, " its own
    validators' messages get."""
    message = str(err.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


# The rules' refusals, as HTTP answers: the gateway's edge is where problem details are made.
REFUSALS: dict[type[RefusedError], tuple[int, str]] = {
    NotFoundError: (404, "Not found"),
    ConflictError: (409, "Conflict"),
    InvalidError: (422, "Validation failed"),
    DisabledError: (403, "Turned off"),
}


def refusal_problem(exc: RefusedError) -> ProblemError:
    status, title = next(
        (answer for kind, answer in REFUSALS.items() if isinstance(exc, kind)),
        (409, "Conflict"),
    )
    problem = ProblemError(status, title, exc.detail, errors=exc.errors)
    problem.extra = dict(exc.extra)
    return problem


def install(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(request, exc)

    @app.exception_handler(RefusedError)
    async def _refused(request: Request, exc: RefusedError) -> JSONResponse:
        return problem_response(request, refusal_problem(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors: dict[str, list[str]] = {}
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            if err.get("type") == "json_invalid":
                errors.setdefault("body", []).append("the body is not valid JSON")
                continue
            errors.setdefault(_field_name(loc), []).append(_readable(err))
        detail = "; ".join(f"{field}: {', '.join(msgs)}" for field, msgs in errors.items())
        return problem_response(
            request, ProblemError(422, "Validation failed", detail, errors=errors)
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
        return problem_response(request, ProblemError(exc.status_code, title, str(exc.detail)))

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: Exception) -> JSONResponse:
        if not dberrors.is_transient(exc):
            # Refused by EdFi_Admin's constraints: the transaction was rolled back; say why.
            meaning = dberrors.describe(exc)
            WRITES_REFUSED.labels("gateway", dberrors.sqlstate(exc) or type(exc).__name__).inc()
            log.error("admin database refused the request", path=request.url.path, error=meaning)
            status, title = (
                (409, "Conflict")
                if isinstance(exc, IntegrityError)
                else (422, "Validation failed")
                if isinstance(exc, DataError)
                else (500, "Internal error")
            )
            return problem_response(
                request, ProblemError(status, title, f"Nothing was changed: {meaning}")
            )
        log.warning("admin database unavailable", path=request.url.path, error=str(exc)[:300])
        response = problem_response(
            request,
            ProblemError(
                503,
                "Service unavailable",
                "The admin database is unavailable; nothing was changed. Retry shortly.",
            ),
        )
        response.headers["Retry-After"] = "2"
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return problem_response(
            request,
            ProblemError(500, "Internal error", "The request failed; see the gateway log."),
        )
