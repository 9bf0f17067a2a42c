"""The gateway in-process, for the contract tests (tests/contract/): its FastAPI app, lifespan
included, runs on an event loop of its own thread; httpx clients reach it through a transport
that hands each request to that loop (`httpx.ASGITransport`). No subprocess, no port, and as
many clients (tokens, headers) as a test wants on one running gateway.

Each gateway gets an admin database of its own, cloned from a template migrated once per run
(`AdminTemplate`), so contract tests share no rows with each other or with other suites."""

from __future__ import annotations

import asyncio
import gc
import io
import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any
from unittest import mock

import httpx
import psycopg
import requests
import requests.adapters
import urllib3
from psycopg import sql

from services.runtime.settings import Settings
from tests.support import pg

FULL_ACCESS = "edfi_admin_api/full_access"
BASE_URL = "http://gateway.test"


def settings_from(env: dict[str, str]) -> Settings:
    """Settings read from exactly these variables (over the process environment), as a service
    started with them would read them."""
    with mock.patch.dict(os.environ, env):
        return Settings()


class AdminTemplate:
    """An EdFi_Admin database migrated once; `clone()` copies it (`CREATE DATABASE … TEMPLATE`,
    a tenth of a second) with a deployment id of its own, as a database migrated anew has.
    Dropping waits for a checkpoint of the whole server, so clones and the template are
    dropped together at the end of the run (`pg.drop_later`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.server = pg.LOCAL

    def create(self) -> AdminTemplate:
        self.server.edfi_admin(self.name)
        gc.collect()  # the migration tool's connection is closed once it is collected
        return self

    def clone(self, tag: str = "") -> str:
        name = f"{self.name}_{tag}{uuid.uuid4().hex[:6]}"
        with psycopg.connect(self.server.url, autocommit=True) as c:
            c.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(self.name)
                )
            )
        self.server.execute(name, "UPDATE edfi_im.deployment SET id = gen_random_uuid()")
        return name

    def drop_later(self, name: str) -> None:
        pg.drop_later(name)

    def close(self) -> None:
        pg.drop_later(self.name)


class InProcessGateway:
    """`create_app(settings)` served on a loop thread; `http` is a client without a token."""

    def __init__(self, settings: Settings, env: dict[str, str], admin_database: str) -> None:
        self.settings = settings
        self.env = env
        self.admin_database = admin_database
        self.url = BASE_URL
        self.tokens: dict[str, str] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="gateway", daemon=True)
        self._stop: asyncio.Event | None = None
        self._served: Future[None] | None = None
        self._asgi: httpx.ASGITransport | None = None
        self.transport = _LoopTransport(self)
        self.http = self.anonymous()

    # --- life ----------------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> InProcessGateway:
        from services.gateway.app import create_app

        self._thread.start()
        app = create_app(self.settings)
        started: Future[None] = Future()

        async def serve() -> None:
            self._stop = asyncio.Event()
            async with app.router.lifespan_context(app):
                started.set_result(None)
                await self._stop.wait()

        self._served = asyncio.run_coroutine_threadsafe(serve(), self._loop)
        self._served.add_done_callback(
            lambda done: (
                started.set_exception(done.exception() or RuntimeError("gateway stopped"))
                if not started.done()
                else None
            )
        )
        started.result(timeout)
        self._asgi = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        return self

    def stop(self, timeout: float = 60) -> None:
        self.http.close()
        if self._served is not None and self._stop is not None and not self._served.done():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._served.result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._loop.close()

    def exchange(
        self, request: httpx.Request, timeout: float
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Status, headers and body (as sent) of the gateway's answer to `request`."""
        assert self._asgi is not None, "the gateway is not started"
        asgi = self._asgi
        body = request.read()

        async def send() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            copy = httpx.Request(
                request.method, request.url, headers=request.headers, stream=httpx.ByteStream(body)
            )
            answer = await asgi.handle_async_request(copy)
            content = b"".join([part async for part in answer.stream])  # type: ignore[union-attr]
            return answer.status_code, answer.headers.raw, content

        return asyncio.run_coroutine_threadsafe(send(), self._loop).result(timeout)

    def run(self, request: httpx.Request, timeout: float) -> httpx.Response:
        status, headers, content = self.exchange(request, timeout)
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(content))

    def requests_session(self) -> requests.Session:
        """A `requests` session whose requests go to this gateway (schemathesis sends with one)."""
        session = requests.Session()
        session.mount(self.url, _RequestsAdapter(self))
        return session

    # --- clients, as tests/support/stack.py's Stack has them ------------------------------------

    def anonymous(self, timeout: float = 30, **headers: str) -> httpx.Client:
        return httpx.Client(
            transport=self.transport, base_url=self.url, timeout=timeout, headers=headers
        )

    def new_token(self, scope: str = FULL_ACCESS, tenants: str | None = None) -> str:
        """The access token of a client registered now, limited to `tenants` if given."""
        client_id = f"tests-{uuid.uuid4().hex[:12]}"
        secret = f"Tests-{uuid.uuid4().hex}-Secret!"
        form = {"ClientId": client_id, "ClientSecret": secret, "DisplayName": "tests"}
        if tenants is not None:
            form["Tenants"] = tenants
        self.http.post("/connect/register", data=form).raise_for_status()
        r = self.http.post(
            "/connect/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
                "scope": scope,
            },
        )
        r.raise_for_status()
        token: str = r.json()["access_token"]
        return token

    def token(self, scope: str = FULL_ACCESS) -> str:
        if scope not in self.tokens:
            self.tokens[scope] = self.new_token(scope)
        return self.tokens[scope]

    def client(
        self, scope: str = FULL_ACCESS, timeout: float = 30, tenant: str | None = None
    ) -> httpx.Client:
        """A client that sends a bearer token (and a `tenant` header)."""
        headers = {"Authorization": f"Bearer {self.token(scope)}"}
        if tenant is not None:
            headers["tenant"] = tenant
        return self.anonymous(timeout, **headers)


class _RequestsAdapter(requests.adapters.HTTPAdapter):
    def __init__(self, gateway: InProcessGateway) -> None:
        super().__init__()
        self._gateway = gateway

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, timeout: Any = None, **_: Any
    ) -> requests.Response:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        assert isinstance(body, bytes), "a streamed body"
        assert request.method is not None and request.url is not None
        status, headers, content = self._gateway.exchange(
            httpx.Request(
                request.method,
                request.url,
                headers=[
                    (k, v if isinstance(v, str) else v.decode("latin-1"))
                    for k, v in request.headers.items()
                ],
                stream=httpx.ByteStream(body),
            ),
            float(timeout) if isinstance(timeout, int | float) else 60,
        )
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(content),
            headers=urllib3.HTTPHeaderDict([(k.decode(), v.decode()) for k, v in headers]),
            status=status,
            preload_content=False,
            decode_content=True,
            version=11,
        )
        return self.build_response(request, raw)


class _LoopTransport(httpx.BaseTransport):
    def __init__(self, gateway: InProcessGateway) -> None:
        self._gateway = gateway

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeout: Any = request.extensions.get("timeout", {}).get("read") or 60
        return self._gateway.run(request, float(timeout))


@contextmanager
def gateway_on(
    template: AdminTemplate, base_env: dict[str, str], **extra_env: str
) -> Iterator[InProcessGateway]:
    """A gateway on an admin database cloned for it (dropped afterwards), with `base_env` and
    `extra_env` as its environment."""
    database = template.clone()
    env = {
        **base_env,
        "EDFI_IM_ADMIN_DATABASE_URL": template.server.database_url(database),
        **extra_env,
    }
    gateway = InProcessGateway(settings_from(env), env, database)
    try:
        gateway.start()
        yield gateway
    finally:
        gateway.stop()
        template.drop_later(database)
