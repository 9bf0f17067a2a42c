"""What Ed-Fi clients call that this system does not manage (vendors, applications, claim sets
…): a `404` problem that says so, not a bare 404. The Admin Console treats a 404 of its health
check as "no data"."""

from __future__ import annotations

from fastapi import APIRouter, Request

from services.gateway.problems import ProblemError

# Admin API's other resources, by version (its Features folders).
RESOURCES = {
    "v2": (
        "vendors",
        "applications",
        "claimSets",
        "profiles",
        "actions",
        "authorizationStrategies",
        "resourceClaims",
        "resourceClaimActions",
        "resourceClaimActionAuthStrategies",
        "apiClients",
        "odsInstances",
        "odsInstanceContexts",
        "odsInstanceDerivatives",
        "tenants",
    ),
    "v3": (
        "vendors",
        "applications",
        "claimSets",
        "profiles",
        "actions",
        "authorizationStrategies",
        "resourceClaims",
        "resourceClaimActions",
        "resourceClaimActionAuthStrategies",
        "apiClients",
        "dataStores",
        "dataStoreContexts",
        "dataStoreDerivatives",
        "tenants",
        "jobs",
    ),
}
SERVED = (
    "/v2/dbInstances, /v2/jobs, /v2/schedules, /v2/odsInstances/manage, /v3/dataStores/manage, "
    "/v2/tenants/{tenant}/odsInstances/edOrgs, /v3/tenants/{tenant}/dataStores/edOrgs and "
    "/adminconsole/tenants and /adminconsole/odsInstances"
)
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

router = APIRouter(include_in_schema=False)


def not_managed(request: Request) -> ProblemError:
    return ProblemError(
        404,
        "Not found",
        f"{request.url.path} is not served here: this system manages ODS instances only "
        f"({SERVED}); vendors, applications, claim sets and the rest of Ed-Fi Admin API are "
        "not part of it",
    )


async def _not_managed(request: Request) -> None:
    raise not_managed(request)


for version, resources in RESOURCES.items():
    for resource in resources:
        router.add_api_route(f"/{version}/{resource}", _not_managed, methods=METHODS)
        router.add_api_route(f"/{version}/{resource}/{{rest:path}}", _not_managed, methods=METHODS)
# The Admin Console's own health check (relative to its Admin API address, with `/adminapi`).
router.add_api_route("/adminapi/{rest:path}", _not_managed, methods=METHODS)
router.add_api_route("/adminconsole/{rest:path}", _not_managed, methods=METHODS)
