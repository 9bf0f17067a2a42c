"""The gateway: validates, writes request + job + outbox in one transaction, answers 202."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy import text

from services.admin_db.engine import create_admin_engine
from services.admin_db.tenants import TenantDatabases
from services.admin_db.waiting import keep_flagging
from services.gateway import console, copies, dashboard, problems, unmanaged
from services.gateway.auth import Authenticator, authorize
from services.gateway.auth import router as auth_router
from services.gateway.correlation import CORRELATION_HEADER, CorrelateAndMeasure
from services.gateway.dead_letter_routes import router as dead_letter_router
from services.gateway.documentation import (
    PROTECTED_RESPONSES,
    declare_body_limit,
    documented_app,
)
from services.gateway.edfi.answers import EdFiError, edfi_response
from services.gateway.edfi.info import information_router
from services.gateway.edfi.info import tenants_router as edfi_tenants_router
from services.gateway.edfi.manage import manage_router
from services.gateway.events import router as events_router
from services.gateway.feed import ChangeFeed
from services.gateway.limits import BodyLimit
from services.gateway.paths import CanonicalPaths
from services.gateway.routes import router
from services.gateway.schedule_routes import router as schedule_router
from services.gateway.state import Gateway, select_tenant
from services.runtime.logging import get_logger
from services.runtime.metrics import exposition
from services.runtime.publisher import ConfirmingPublisher
from services.runtime.settings import Settings
from services.runtime.startup import declare_topology_when_available, when_available

log = get_logger(__name__)


def create_app(settings: Settings) -> FastAPI:
    settings.signing_key()  # a start-up error when missing in production
    if settings.jwt_signing_key is None and settings.is_development:
        log.warning(
            "EDFI_IM_JWT_SIGNING_KEY is not set: tokens are signed with a random key made at "
            "start-up, so they stop working when the gateway restarts and each replica has its "
            "own; set it to keep tokens across restarts and replicas"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await declare_topology_when_available(settings)
        publisher = ConfirmingPublisher(settings.rabbitmq_url)
        await when_available(
            publisher.connect, "connect to the broker", settings.startup_wait_seconds
        )
        # 20 kept connections: with 16 requests in flight, a pool of 10 opened and closed
        # connections all the time (each a new server process and its set-up round trips).
        databases = TenantDatabases(settings, publisher, pool_size=20)
        # API clients live in the top-level admin database (in single-tenant mode, the one).
        engine = (
            databases.get(None).engine
            if not settings.multi_tenant
            else create_admin_engine(settings.admin_database_url, pool_size=2)
        )
        databases.start_relays()
        # Jobs nobody takes say why they may be waiting (the gateway knows every tenant it
        # accepts jobs for, even one the other services were not configured for).
        waiting = [
            asyncio.create_task(
                keep_flagging(
                    db, settings.orphan_threshold_seconds, settings.orphan_check_interval_seconds
                )
            )
            for db in databases
        ]
        # The change feed is PostgreSQL's (triggers, LISTEN/NOTIFY): a tenant whose admin
        # database is on SQL Server has no event streams (they answer 501).
        feeds = {
            db.tenant: ChangeFeed(db.engine, db.settings.admin_database_url, settings)
            for db in databases
            if db.engine.dialect.name == "postgresql"
        }
        await asyncio.gather(*(feed.start() for feed in feeds.values()))
        app.state.feeds = feeds
        app.state.loop = asyncio.get_running_loop()
        app.state.gateway = Gateway(settings, engine, publisher, databases)
        app.state.authenticator = Authenticator(settings, engine)
        log.info(
            "gateway started",
            host=settings.gateway_host,
            port=settings.gateway_port,
            tenants=sorted(settings.tenants) or None,
        )
        try:
            yield
        finally:
            await asyncio.gather(*(feed.stop() for feed in feeds.values()))
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
            await databases.stop_relays()
            await publisher.close()
            await databases.dispose()
            if settings.multi_tenant:
                await engine.dispose()
            log.info("gateway stopped")

    app = documented_app(
        title="Ed-Fi ODS instance manager",
        version="0.1.0",
        description="Creates ODS databases asynchronously; every request is a job.",
        lifespan=lifespan,
    )
    problems.install(app)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        """Prometheus metrics (no token: scrape it from inside your network)."""
        body, content_type = exposition(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["health"])
    async def ready(request: Request) -> JSONResponse:
        gateway: Gateway = request.app.state.gateway
        checks = {"database": "ok", "broker": "ok"}
        engines = [gateway.engine, *(db.engine for db in gateway.databases)]
        for engine in dict.fromkeys(engines):
            try:
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            except Exception as exc:
                checks["database"] = f"unavailable: {type(exc).__name__}"
        if not gateway.publisher.connected:
            checks["broker"] = "unavailable"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.exception_handler(EdFiError)
    async def _edfi(request: Request, exc: EdFiError) -> JSONResponse:
        return edfi_response(request, exc)

    protected = [Depends(authorize), Depends(select_tenant)]
    answers = PROTECTED_RESPONSES
    app.include_router(information_router)
    app.include_router(auth_router)
    app.include_router(router, tags=["instances"], dependencies=protected, responses=answers)
    app.include_router(copies.router, tags=["instances"], dependencies=protected, responses=answers)
    app.include_router(schedule_router, dependencies=protected, responses=answers)
    app.include_router(manage_router(), dependencies=protected, responses=answers)
    app.include_router(edfi_tenants_router)
    app.include_router(events_router, dependencies=protected, responses=answers)
    app.include_router(dead_letter_router, dependencies=protected, responses=answers)
    app.include_router(dashboard.router)
    app.include_router(console.tenants_router)
    app.include_router(console.instances_router, dependencies=protected, responses=answers)
    app.include_router(unmanaged.router)  # last: only what nothing above serves
    # Innermost of these: the correlation id is set before any handler runs, and the route is
    # known by the time the response starts.
    app.add_middleware(CorrelateAndMeasure)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    declare_body_limit(app, settings.max_body_bytes)
    app.add_middleware(CanonicalPaths)
    if settings.cors_origins:
        # Outermost, so a preflight is answered before anything asks for a token.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Tenant", CORRELATION_HEADER],
            expose_headers=["Location", CORRELATION_HEADER],
            max_age=600,
        )
    return app


def stopping(app: FastAPI) -> Callable[[], None]:
    """What the server calls when it is told to stop (from a signal handler): every event
    stream ends, so that the graceful shutdown need not wait for streams that never end."""

    def stop_streams() -> None:
        loop: asyncio.AbstractEventLoop | None = getattr(app.state, "loop", None)
        for feed in getattr(app.state, "feeds", {}).values():
            if loop is not None:
                loop.call_soon_threadsafe(feed.close)

    return stop_streams
