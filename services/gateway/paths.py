"""Paths as clients write them: repeated slashes are one (Ed-Fi Admin App, given an address
without a path, posts to `//connect/register`), and the routes of Ed-Fi's APIs match ignoring
case, as ASP.NET's do (`/adminConsole/odsInstances/7`, `/v2/odsinstances/manage`)."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

SLASHES = re.compile(r"/{2,}")

# Ed-Fi's routes, spelled as this gateway serves them; matched ignoring case.
CANONICAL: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"^{re.escape(prefix)}(?=/|$)", re.IGNORECASE), prefix)
    for prefix in (
        "/v2/odsInstances/manage",
        "/v3/dataStores/manage",
        "/connect/register",
        "/connect/token",
    )
] + [
    (
        re.compile(rf"^/{version}/tenants/([^/]+)/{resource}/edOrgs$", re.IGNORECASE),
        rf"/{version}/tenants/\1/{resource}/edOrgs",
    )
    for version, resource in (("v2", "odsInstances"), ("v3", "dataStores"))
]
CONSOLE = "/adminconsole"


def canonical(path: str) -> str:
    path = SLASHES.sub("/", path)
    if path.lower().startswith(CONSOLE):
        return path.lower()
    for pattern, spelled in CANONICAL:
        if pattern.match(path):
            return pattern.sub(spelled, path, count=1)
    return path


class CanonicalPaths:
    """ASGI middleware: the request's path, as the routes are written."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = canonical(scope["path"])
            if path != scope["path"]:
                scope = dict(scope, path=path, raw_path=path.encode())
        await self.app(scope, receive, send)
