"""`/dashboard`: the operators' web page, served by the gateway. Plain HTML, CSS and JavaScript of
our own (no build step, nothing fetched from elsewhere); every action goes through the public
API with the signed-in client's token, so the API's scopes and tenants apply to it unchanged."""

from __future__ import annotations

from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from services.gateway.problems import ProblemError
from services.gateway.state import Gateway

router = APIRouter(include_in_schema=False)

FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "views.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


def _file(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def _headers(request: Request) -> dict[str, str]:
    """No inline script or style, nothing from another origin (but the OIDC issuer's token
    endpoint, when one is configured), never framed."""
    gateway: Gateway = request.app.state.gateway
    connect = "'self'"
    if gateway.settings.oidc_issuer:
        issuer = urlsplit(gateway.settings.oidc_issuer)
        connect += f" {issuer.scheme}://{issuer.netloc}"
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src {connect}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


@router.get("/dashboard")
async def dashboard(request: Request) -> Response:
    return Response(
        _file("index.html"), media_type="text/html; charset=utf-8", headers=_headers(request)
    )


@router.get("/dashboard/config.json")
async def config(request: Request) -> JSONResponse:
    """What the page needs before it signs in: tenants or not, the templates, the OIDC issuer."""
    gateway: Gateway = request.app.state.gateway
    settings = gateway.settings
    body: dict[str, Any] = {
        "multiTenant": settings.multi_tenant,
        "templates": sorted(settings.templates),
        "oidcIssuer": settings.oidc_issuer,
        "oidcClientId": settings.dashboard_oidc_client_id,
        "oidcScope": settings.dashboard_oidc_scope,
        "heartbeatSeconds": settings.events_heartbeat_seconds,
    }
    return JSONResponse(body, headers=_headers(request))


@router.get("/dashboard/{name}")
async def static_file(name: str, request: Request) -> Response:
    if name not in FILES:
        raise ProblemError(404, "Not found", f"no file {name!r} in the dashboard")
    return Response(_file(name), media_type=FILES[name], headers=_headers(request))
