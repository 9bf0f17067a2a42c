"""Every request's correlation id (given or new) and its latency by route, as plain ASGI: no
task, no memory stream, no second copy of the body per request (what Starlette's
BaseHTTPMiddleware costs, on every request)."""

from __future__ import annotations

import time
import uuid

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.runtime.metrics import HTTP_REQUEST_SECONDS

CORRELATION_HEADER = "X-Correlation-ID"
_HEADER_KEY = CORRELATION_HEADER.lower().encode()


def _given(scope: Scope) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == _HEADER_KEY:
            text: str = value.decode("latin-1")
            return text
    return None


class CorrelateAndMeasure:
    """`request.state.correlation_id` and the structlog context for the request's length; the
    header on the response; HTTP_REQUEST_SECONDS by method, route template (never the raw
    path) and status, observed when the response starts (a stream's headers, not its end)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        correlation_id = (_given(scope) or str(uuid.uuid4()))[:100]
        scope.setdefault("state", {})["correlation_id"] = correlation_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[CORRELATION_HEADER] = correlation_id
                template = getattr(scope.get("route"), "path", None) or "unmatched"
                HTTP_REQUEST_SECONDS.labels(
                    scope["method"], template, str(message["status"])
                ).observe(time.perf_counter() - started)
            await send(message)

        with structlog.contextvars.bound_contextvars(correlation_id=correlation_id):
            await self.app(scope, receive, send_with_id)
