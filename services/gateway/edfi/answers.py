"""Ed-Fi's error bodies: v2 `{"title": "Validation failed", "errors": {...}}` (Admin API's
RequestLoggingMiddleware), v3 RFC 7807 problems with Ed-Fi's type URNs
(`urn:ed-fi:management-api:…`). Each also carries `status` and `detail`, so a reader of this
system's own problems finds them too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse

from services.gateway.problems import PROBLEM_JSON

Version = Literal["v2", "v3"]

URN = "urn:ed-fi:management-api:"
MALFORMED = (
    "The request body contains malformed JSON. Please ensure your data is properly formatted "
    "and try again."
)


class EdFiError(Exception):
    """An error on an Ed-Fi route, answered in that version's shape."""

    def __init__(
        self,
        version: Version,
        status: int,
        *,
        title: str,
        detail: str | None = None,
        errors: dict[str, list[str]] | None = None,
        kind: str = "bad-request:validation",
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.version = version
        self.status = status
        self.title = title
        self.detail = detail or title
        self.errors = errors
        self.kind = kind
        self.extra = extra


@dataclass(frozen=True)
class Answers:
    """The errors of one version's routes."""

    version: Version

    def invalid(self, errors: dict[str, list[str]], **extra: Any) -> EdFiError:
        detail = "; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items())
        return EdFiError(
            self.version, 400, title="Validation failed", detail=detail, errors=errors, **extra
        )

    def not_found(self, entity: str, key: object) -> EdFiError:
        title = f"Not found: {entity} with ID {key}. It may have been recently deleted."
        return EdFiError(self.version, 404, title=title, kind="not-found")

    def malformed(self, detail: str = MALFORMED) -> EdFiError:
        return EdFiError(
            self.version, 400, title="Bad Request", detail=detail, kind="bad-request:data"
        )


def edfi_response(request: Request, exc: EdFiError) -> JSONResponse:
    correlation_id = getattr(request.state, "correlation_id", None)
    body: dict[str, Any]
    if exc.version == "v2":
        body = {"title": exc.title}
        if exc.kind == "bad-request:data":  # Admin API 2 answers these with a bare message
            body["message"] = exc.detail
        if exc.errors:
            body["errors"] = exc.errors
    else:
        body = {"type": URN + exc.kind, "title": exc.title}
        if exc.errors:
            body["validationErrors"] = exc.errors
            body["errors"] = exc.errors
    body |= {"status": exc.status, "detail": exc.detail}
    if exc.version == "v3":
        body["correlationId"] = correlation_id
    body |= exc.extra
    return JSONResponse(body, status_code=exc.status, media_type=PROBLEM_JSON)
