"""The gateway's API documentation: Swagger UI (`/docs`) and ReDoc (`/redoc`) served with their
scripts and styles from the `fastapi-offline` package (no CDN: hosts behind a firewall see the
pages too), and the answers every protected route may give declared in the OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse

# Where the documentation pages' scripts, styles and icon are served from.
ASSETS_URL = "/docs-assets"
PROBLEM: dict[str, Any] = {
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
}
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
}

# Answers of the token and tenant checks every protected route runs (`authorize`,
# `select_tenant`), whatever the route does.
PROTECTED_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        "description": (
            "Multi-tenant mode: the `tenant` header is missing, or is not 1-50 letters, digits "
            "or '-'"
        ),
        **PROBLEM,
    },
    401: {"description": "No access token, or one that is invalid or expired", **PROBLEM},
    403: {
        "description": "The token's scope does not allow this (read_only tokens may only read)",
        **PROBLEM,
    },
}


# The pages may load nothing from another host: ReDoc's bundle links its maker's logo on a CDN,
# which a browser would otherwise fetch (and show broken behind a firewall).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' blob:; worker-src 'self' blob:; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "connect-src 'self'"
)


def documented_app(**kwargs: Any) -> FastAPI:
    """A FastAPI app whose `/docs` and `/redoc` load nothing from outside the gateway."""
    from fastapi_offline import FastAPIOffline

    app: FastAPI = FastAPIOffline(docs_url=None, redoc_url=None, static_url=ASSETS_URL, **kwargs)
    title = app.title
    headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY}
    redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=f"{root}{redirect}",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )
        page.headers.update(headers)
        return page

    @app.get(redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
        page.headers.update(headers)
        return page

    return app


def declare_body_limit(app: FastAPI, max_bytes: int) -> None:
    """Every operation that takes a body may answer 413 (EDFI_IM_MAX_BODY_BYTES), and the
    problem answers share one schema."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        too_large = {
            "description": f"The request body is larger than {max_bytes} bytes "
            "(EDFI_IM_MAX_BODY_BYTES)",
            **PROBLEM,
        }
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if isinstance(operation, dict) and "requestBody" in operation:
                    operation.setdefault("responses", {}).setdefault("413", too_large)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
