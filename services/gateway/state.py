"""What the gateway's request handlers share, built once at start-up, and the choice of tenant
each request makes (Ed-Fi Admin API 2's `tenant` header)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from services.admin_db.tenants import TenantDatabase, TenantDatabases
from services.gateway.auth import Caller, authorize
from services.gateway.problems import ProblemError
from services.runtime.publisher import ConfirmingPublisher
from services.runtime.settings import TENANT_NAME, Settings


@dataclass
class Gateway:
    settings: Settings
    engine: AsyncEngine  # the top-level admin database: API clients
    publisher: ConfirmingPublisher
    databases: TenantDatabases


def tenant_problem(status: int, detail: str) -> ProblemError:
    title = "Bad request" if status == 400 else "Not found"
    return ProblemError(status, title, detail, errors={"tenant": [detail]})


async def select_tenant(
    request: Request,
    caller: Annotated[Caller, Depends(authorize)],
    tenant: Annotated[
        str | None,
        Header(
            description=(
                "The tenant to act on (multi-tenant mode only; ignored with no tenants "
                "configured): letters, digits and '-', at most 50."
            ),
        ),
    ] = None,
) -> TenantDatabase:
    """Every protected route's tenant. In multi-tenant mode the header is required; a tenant
    that does not exist and one the caller may not see answer alike (404)."""
    gateway: Gateway = request.app.state.gateway
    if not gateway.settings.multi_tenant:
        state = gateway.databases.get(None)
    else:
        if tenant is None or not tenant.strip():
            raise tenant_problem(400, "a `tenant` header is required: this gateway has tenants")
        if not TENANT_NAME.fullmatch(tenant):
            raise tenant_problem(400, "must be 1-50 letters, digits or '-'")
        name = gateway.settings.find_tenant(tenant)
        if name is None or not caller.sees(name):
            raise tenant_problem(404, f"no tenant named {tenant!r}")
        state = gateway.databases.get(name)
        structlog.contextvars.bind_contextvars(tenant=name)
    request.state.tenant = state
    return state


def request_tenant(request: Request) -> TenantDatabase:
    """The request's tenant (set by `select_tenant`, a dependency of every protected route)."""
    tenant: TenantDatabase = request.state.tenant
    return tenant
