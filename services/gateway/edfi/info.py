"""Admin API's anonymous information endpoint (`GET /`), without which Ed-Fi Admin App will not
register an environment, and the tenants' instance listings it reads instances and their
statuses from (`/v2/tenants/{t}/odsInstances/edOrgs`, `/v3/tenants/{t}/dataStores/edOrgs`)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import Field

from services.admin_db.listing import Listed, tenant_listing
from services.gateway.auth import Caller, authorize
from services.gateway.edfi.answers import Answers
from services.gateway.state import Gateway
from services.rules.edfi_status import EdFiStatus, to_edfi
from services.rules.parameters import CamelModel

# Admin API's own `version` for its v2 and v3 modes (ConstantsHelper): clients check it.
ADMIN_API_VERSION = "2.0"


def build() -> str:
    try:
        return version("edfi-instance-manager")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree without metadata
        return "0+unknown"


class Tenancy(CamelModel):
    multitenant_mode: bool
    tenants: list[str]


class Information(CamelModel):
    tenancy: Tenancy
    version: str = Field(description="Admin API's version this system answers as: 2.0")
    build: str = Field(description="This system's own version")
    specification_version: str = Field(description="v2 or v3 (EDFI_IM_ADMIN_API_MODE)")


information_router = APIRouter(tags=["Admin API: information"])


@information_router.get(
    "/",
    response_model=Information,
    summary="What this API is (anonymous, as Admin API's): its version and tenants",
)
async def information(request: Request) -> Information:
    settings = request.app.state.gateway.settings
    return Information(
        tenancy=Tenancy(
            multitenant_mode=settings.multi_tenant,
            tenants=list(settings.tenants) if settings.multi_tenant else [],
        ),
        version=ADMIN_API_VERSION,
        build=build(),
        specification_version=settings.admin_api_mode,
    )


class EducationOrganization(CamelModel):
    education_organization_id: int
    name_of_institution: str
    short_name_of_institution: str | None = None
    discriminator: str
    parent_id: int | None = None


class TenantOdsInstance(CamelModel):
    id: int | None = Field(description="dbo.OdsInstances id; null until the instance is created")
    ods_instance_manage_id: int | None
    name: str
    instance_type: str | None
    status: EdFiStatus
    database_template: str | None
    database_name: str | None
    education_organizations: list[EducationOrganization]


class TenantDataStore(CamelModel):
    id: int | None = Field(description="dbo.OdsInstances id; null until the instance is created")
    data_store_manage_id: int | None
    name: str
    data_store_type: str | None
    status: EdFiStatus
    database_template: str | None
    database_name: str | None
    education_organizations: list[EducationOrganization]


class TenantOdsInstances(CamelModel):
    id: str
    name: str
    ods_instances: list[TenantOdsInstance]


class TenantDataStores(CamelModel):
    id: str
    name: str
    data_stores: list[TenantDataStore]


def _element(item: Listed) -> dict[str, Any]:
    ods, instance = item.ods, item.instance
    return {
        "id": ods.odsinstanceid if ods is not None else None,
        "manage_id": instance.id if instance is not None else None,
        "name": ods.name if ods is not None else instance.name,  # type: ignore[union-attr]
        "kind": ods.instancetype if ods is not None else None,
        # A dbo row no instance here stands for is simply there: Created, as Admin API says.
        "status": to_edfi(instance.status, instance.job_status)
        if instance is not None
        else EdFiStatus.CREATED,
        "database_template": instance.databasetemplate if instance is not None else None,
        "database_name": instance.databasename if instance is not None else None,
        "education_organizations": item.education_organizations,
    }


tenants_router = APIRouter(tags=["Admin API: tenants"])


async def _listing(
    request: Request, caller: Caller, tenant: str, header: str | None, answers: Answers
) -> tuple[str, list[dict[str, Any]]]:
    gateway: Gateway = request.app.state.gateway
    settings = gateway.settings
    if settings.multi_tenant:
        if header is None or not header.strip():
            raise answers.invalid({"Tenant": ["Tenant header is missing"]})
        if header.lower() != tenant.lower():
            raise answers.invalid({"Tenant": ["Tenant header and URL tenant name do not match"]})
        name = settings.find_tenant(tenant)
        if name is None or not caller.sees(name):
            raise answers.not_found("tenant", tenant)
        database = gateway.databases.get(name)
    else:
        if tenant.lower() != "default":
            raise answers.not_found("TenantName", tenant)
        name, database = "default", gateway.databases.get(None)
    async with database.engine.connect() as conn:
        listed = await tenant_listing(conn)
    return name, [_element(item) for item in listed]


TenantHeader = Annotated[
    str | None,
    Header(alias="tenant", description="The tenant (multi-tenant mode: must be the path's)"),
]


@tenants_router.get(
    "/v2/tenants/{tenant}/odsInstances/edOrgs",
    response_model=TenantOdsInstances,
    summary="A tenant's instances and their statuses, as Admin API 2 lists them for Admin App",
)
async def v2_tenant_instances(
    tenant: str,
    request: Request,
    caller: Annotated[Caller, Depends(authorize)],
    tenant_header: TenantHeader = None,
) -> TenantOdsInstances:
    name, elements = await _listing(request, caller, tenant, tenant_header, Answers("v2"))
    return TenantOdsInstances(
        id=name,
        name=name,
        ods_instances=[
            TenantOdsInstance(
                ods_instance_manage_id=e.pop("manage_id"), instance_type=e.pop("kind"), **e
            )
            for e in elements
        ],
    )


@tenants_router.get(
    "/v3/tenants/{tenant}/dataStores/edOrgs",
    response_model=TenantDataStores,
    summary="A tenant's instances and their statuses, as Admin API 3 lists them for Admin App",
)
async def v3_tenant_instances(
    tenant: str,
    request: Request,
    caller: Annotated[Caller, Depends(authorize)],
    tenant_header: TenantHeader = None,
) -> TenantDataStores:
    name, elements = await _listing(request, caller, tenant, tenant_header, Answers("v3"))
    return TenantDataStores(
        id=name,
        name=name,
        data_stores=[
            TenantDataStore(
                data_store_manage_id=e.pop("manage_id"), data_store_type=e.pop("kind"), **e
            )
            for e in elements
        ],
    )
