"""`/adminconsole`: the contract the Ed-Fi Admin Console speaks (Ed-Fi Admin API 2 served it
until 2025), on the same jobs, outbox and services as `/v2/dbInstances`.

Paths are case-insensitive, as the Console writes them both ways. Tenants come from the
configuration (single-tenant mode is one tenant named `default`); an instance's contexts and
derivatives are kept with it and written to dbo when it completes. What the Console calls that
this system does not manage (vendors, applications, claim sets …) is a `404` problem.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts.messages import Operation
from services.admin_db import instances
from services.admin_db.accept import accept_operation
from services.admin_db.tables import (
    db_instances,
    ods_instance_contexts,
    ods_instance_derivatives,
    ods_instances,
)
from services.admin_db.tenants import TenantDatabase
from services.gateway.auth import Caller, authorize
from services.gateway.problems import ProblemError
from services.gateway.routes import (
    MAX_ID,
    PROBLEM,
    Digits,
    Limit,
    Offset,
    accept_new_instance,
    accepted,
    page_limit,
)
from services.gateway.state import Gateway, request_tenant, select_tenant
from services.rules.naming import Printable
from services.rules.parameters import (
    CamelModel,
    InstanceDetails,
    checked_database_name,
    checked_name,
)
from services.rules.states import InstanceStatus
from services.runtime.logging import get_logger
from services.runtime.settings import Settings

log = get_logger(__name__)

PREFIX = "/adminconsole"
SOURCE = "adminconsole"  # what asked for its jobs, in the metrics and logs
ConsoleId = Annotated[int, Digits, Path(ge=1, le=MAX_ID, description="The instance's id")]


# --- tenants -----------------------------------------------------------------------------------


class TenantDocument(CamelModel):
    name: str
    edfi_api_discovery_url: str | None = None


class ConsoleTenant(CamelModel):
    tenant_id: int
    document: TenantDocument


def console_tenants(settings: Settings) -> list[tuple[int, str, Settings]]:
    """(tenantId, name, settings), numbered in configuration order from 1."""
    if not settings.multi_tenant:
        return [(1, "default", settings)]
    return [(k, name, settings.for_tenant(name)) for k, name in enumerate(settings.tenants, 1)]


def tenant_id(settings: Settings, tenant: str | None) -> int:
    return next((k for k, name, _ in console_tenants(settings) if tenant in (None, name)), 1)


tenants_router = APIRouter(prefix=PREFIX, tags=["adminconsole"])


def _visible(request: Request, caller: Caller) -> list[ConsoleTenant]:
    gateway: Gateway = request.app.state.gateway
    return [
        ConsoleTenant(
            tenant_id=k,
            document=TenantDocument(name=name, edfi_api_discovery_url=s.edfi_api_discovery_url),
        )
        for k, name, s in console_tenants(gateway.settings)
        if not gateway.settings.multi_tenant or caller.sees(name)
    ]


@tenants_router.get("/tenants", response_model=list[ConsoleTenant])
async def list_tenants(
    request: Request, caller: Annotated[Caller, Depends(authorize)]
) -> list[ConsoleTenant]:
    return _visible(request, caller)


@tenants_router.get("/tenants/{tenant_id}", response_model=ConsoleTenant, responses={404: PROBLEM})
async def get_tenant(
    request: Request,
    caller: Annotated[Caller, Depends(authorize)],
    tenant_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> ConsoleTenant:
    found = next((t for t in _visible(request, caller) if t.tenant_id == tenant_id), None)
    if found is None:
        raise ProblemError(404, "Not found", f"no tenant with id {tenant_id}")
    return found


# --- instances -----------------------------------------------------------------------------------


class ConsoleContext(CamelModel):
    id: int
    instance_id: int
    context_key: str
    context_value: str


class ConsoleDerivative(CamelModel):
    id: int
    instance_id: int
    derivative_type: str


class ConsoleInstance(CamelModel):
    id: int
    tenant_id: int
    name: str
    instance_type: str | None
    status: str
    base_url: str | None
    ods_instance_contexts: list[ConsoleContext]
    ods_instance_derivatives: list[ConsoleDerivative]
    error: str | None = Field(
        default=None, description="Why its last operation failed (Error, *_Failed)"
    )


class ConsoleInstanceIn(InstanceDetails):
    """The Console's create and update body. Fields it sends that this system has no use for are
    ignored, so a newer Console keeps working."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    tenant_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    tenant_name: Printable | None = Field(default=None, max_length=50)
    name: str = Field(description="1-46 characters: ASCII letters, digits, space, underscore")

    _valid_name = field_validator("name")(checked_name)


async def _console_rows(
    conn: AsyncConnection,
    state: TenantDatabase,
    instance_id: int | None = None,
    status: InstanceStatus | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> list[ConsoleInstance]:
    query = select(db_instances).order_by(db_instances.c.id).offset(offset).limit(limit)
    if instance_id is not None:
        query = query.where(db_instances.c.id == instance_id)
    if status is not None:
        query = query.where(db_instances.c.status == status.value)
    rows = (await conn.execute(query)).all()
    ods_ids = [r.odsinstanceid for r in rows if r.odsinstanceid is not None]
    # Once an instance is in dbo, dbo is what the ODS/API reads: show that (with its ids).
    contexts: dict[int, list[Any]] = {}
    derivatives: dict[int, list[Any]] = {}
    types: dict[int, str | None] = {}
    if ods_ids:
        for c in await conn.execute(
            select(ods_instance_contexts)
            .where(ods_instance_contexts.c.odsinstance_odsinstanceid.in_(ods_ids))
            .order_by(ods_instance_contexts.c.odsinstancecontextid)
        ):
            contexts.setdefault(c.odsinstance_odsinstanceid, []).append(c)
        for d in await conn.execute(
            select(ods_instance_derivatives)
            .where(ods_instance_derivatives.c.odsinstance_odsinstanceid.in_(ods_ids))
            .order_by(ods_instance_derivatives.c.odsinstancederivativeid)
        ):
            derivatives.setdefault(d.odsinstance_odsinstanceid, []).append(d)
        for o in await conn.execute(
            select(ods_instances.c.odsinstanceid, ods_instances.c.instancetype).where(
                ods_instances.c.odsinstanceid.in_(ods_ids)
            )
        ):
            types[o.odsinstanceid] = o.instancetype
    settings = state.settings
    tid = tenant_id(settings, settings.tenant)
    out = []
    for r in rows:
        if r.odsinstanceid is not None and r.odsinstanceid in types:
            ctx = [
                ConsoleContext(
                    id=c.odsinstancecontextid,
                    instance_id=r.id,
                    context_key=c.contextkey,
                    context_value=c.contextvalue,
                )
                for c in contexts.get(r.odsinstanceid, [])
            ]
            der = [
                ConsoleDerivative(
                    id=d.odsinstancederivativeid, instance_id=r.id, derivative_type=d.derivativetype
                )
                for d in derivatives.get(r.odsinstanceid, [])
            ]
            kind = types[r.odsinstanceid]
        else:  # not in dbo (yet): what was asked for, numbered in order
            ctx = [
                ConsoleContext(
                    id=k,
                    instance_id=r.id,
                    context_key=c["contextKey"],
                    context_value=c["contextValue"],
                )
                for k, c in enumerate(r.contexts or [], 1)
            ]
            der = [
                ConsoleDerivative(id=k, instance_id=r.id, derivative_type=d["derivativeType"])
                for k, d in enumerate(r.derivatives or [], 1)
            ]
            kind = r.instancetype
        out.append(
            ConsoleInstance(
                id=r.id,
                tenant_id=tid,
                name=r.name,
                instance_type=kind,
                status=r.status,
                base_url=settings.edfi_api_discovery_url,
                ods_instance_contexts=ctx,
                ods_instance_derivatives=der,
                error=r.error,
            )
        )
    return out


def _check_tenant(state: TenantDatabase, body: ConsoleInstanceIn) -> None:
    """The body may name its tenant too; it must be the one the `tenant` header chose."""
    settings = state.settings
    named = body.tenant_name
    if named and settings.multi_tenant and named.lower() != (settings.tenant or "").lower():
        raise ProblemError(
            422,
            "Validation failed",
            f"tenantName {named!r} is not the tenant of the request's header",
            errors={"tenantName": ["must be the tenant named in the `tenant` header"]},
        )


instances_router = APIRouter(prefix=PREFIX, tags=["adminconsole"])


@instances_router.get(
    "/odsinstances", response_model=list[ConsoleInstance], responses={422: PROBLEM}
)
async def list_instances(
    request: Request,
    status: Annotated[InstanceStatus | None, Query(description="Only this status")] = None,
    offset: Offset = 0,
    limit: Limit | None = None,
) -> list[ConsoleInstance]:
    """The Console asks without paging and shows what it gets: by default one page of the
    largest size (EDFI_IM_MAX_PAGE_SIZE)."""
    state = request_tenant(request)
    size = state.settings.max_page_size if limit is None else page_limit(state, limit)
    async with state.engine.connect() as conn:
        return await _console_rows(conn, state, status=status, offset=offset, limit=size)


@instances_router.get(
    "/odsinstances/{instance_id}", response_model=ConsoleInstance, responses={404: PROBLEM}
)
async def get_instance(instance_id: ConsoleId, request: Request) -> ConsoleInstance:
    state = request_tenant(request)
    async with state.engine.connect() as conn:
        found = await _console_rows(conn, state, instance_id)
    if not found:
        raise ProblemError(404, "Not found", f"no instance with id {instance_id}")
    return found[0]


@instances_router.post(
    "/odsinstances",
    status_code=202,
    response_model=ConsoleInstance,
    responses={409: PROBLEM, 422: PROBLEM},
    summary="Accept the creation of an instance (its template: EDFI_IM_CONSOLE_DATABASE_TEMPLATE)",
)
async def create_instance(
    body: ConsoleInstanceIn, request: Request, response: Response
) -> ConsoleInstance:
    state = request_tenant(request)
    _check_tenant(state, body)
    template = state.settings.console_database_template
    async with state.engine.begin() as conn:
        row = await accept_new_instance(conn, state, request, body.name, template, body.stored())
        [created] = await _console_rows(conn, state, row.id)
    accepted(state, Operation.CREATE, SOURCE, row, name=row.name, database_name=row.databasename)
    response.headers["Location"] = f"{PREFIX}/odsInstances/{row.id}"
    return created


@instances_router.put(
    "/odsinstances/{instance_id}",
    response_model=ConsoleInstance,
    responses={202: {"model": ConsoleInstance}, 404: PROBLEM, 409: PROBLEM, 422: PROBLEM},
    summary="Update an instance: a new name is a rename (202); contexts and derivatives are "
    "replaced (200 when nothing else changes)",
)
async def update_instance(
    instance_id: ConsoleId, body: ConsoleInstanceIn, request: Request, response: Response
) -> ConsoleInstance:
    state = request_tenant(request)
    _check_tenant(state, body)
    async with state.engine.begin() as conn:
        found = (
            await conn.execute(
                select(db_instances.c.name, db_instances.c.status).where(
                    db_instances.c.id == instance_id
                )
            )
        ).first()
        if found is None:
            raise ProblemError(404, "Not found", f"no instance with id {instance_id}")
        if found.status == InstanceStatus.DELETED.value:
            # As /v2 answers: the row stays for audit, and nothing of it may change.
            raise ProblemError(404, "Not found", f"instance {instance_id} was deleted")
        current = found.name
        # A rename takes its name locks before the instance's row lock, as every rename does
        # (the other order could deadlock with a /v2 rename); the row is locked after it.
        renamed = body.name != current
        if renamed:
            accepted_row = await accept_operation(
                conn,
                instance_id,
                Operation.RENAME,
                correlation_id=request.state.correlation_id,
                tenant=state.tenant,
                new_name=body.name,
                new_database_name=checked_database_name(state.settings, body.name),
                switch=state.settings.switch,
            )
        row = await instances.lock(conn, instance_id)
        assert row is not None
        if row.status == InstanceStatus.DELETED.value:  # deleted while this request waited
            raise ProblemError(404, "Not found", f"instance {instance_id} was deleted")
        await instances.replace_details(conn, instance_id, body.stored(), row.odsinstanceid)
        [updated] = await _console_rows(conn, state, instance_id)
    if renamed:
        accepted(state, Operation.RENAME, SOURCE, accepted_row, new_name=body.name)
        response.status_code = 202
    log.info("instance details updated (Admin Console)", instance_id=instance_id)
    return updated


@instances_router.delete(
    "/odsinstances/{instance_id}",
    status_code=202,
    response_model=ConsoleInstance,
    responses={404: PROBLEM, 409: PROBLEM},
    summary="Accept the deletion of an instance (as DELETE /v2/dbInstances/{id})",
)
async def delete_instance(instance_id: ConsoleId, request: Request) -> ConsoleInstance:
    state = request_tenant(request)
    async with state.engine.begin() as conn:
        row = await accept_operation(
            conn,
            instance_id,
            Operation.DELETE,
            correlation_id=request.state.correlation_id,
            tenant=state.tenant,
            switch=state.settings.switch,
        )
        [deleting] = await _console_rows(conn, state, instance_id)
    accepted(state, Operation.DELETE, SOURCE, row)
    return deleting


__all__ = [
    "instances_router",
    "select_tenant",
    "tenants_router",
]
