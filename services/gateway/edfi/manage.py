"""`/v2/odsInstances/manage` and `/v3/dataStores/manage`: Ed-Fi ODS-Admin-API's instance
management (b6224a88, `Features/OdsInstances/Manage`, `Features/DataStores/Manage`), over the
jobs and rules of `/v2/dbInstances`. A manage id is the instance's id here.

Where Ed-Fi's behaviour would destroy something, this system's rules hold instead (README,
"Ed-Fi Admin API's routes"): a name whose database name another instance uses is refused, not
dropped and re-created; an existing database is never replaced; an instance whose create failed
may be deleted (its database, if any, is this system's own)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts.messages import Operation
from services.admin_db.accept import accept_operation
from services.admin_db.tables import db_instances, jobs
from services.gateway.edfi.answers import Answers, EdFiError
from services.gateway.routes import MAX_ID, accept_new_instance, accepted
from services.gateway.state import request_tenant
from services.rules.edfi_status import EdFiStatus, to_edfi
from services.rules.errors import (
    ConflictError,
    DisabledError,
    InvalidError,
    NotFoundError,
    RefusedError,
)
from services.rules.naming import MAX_NAME_LENGTH, name_problem
from services.rules.parameters import CamelModel
from services.runtime.logging import get_logger

log = get_logger(__name__)

SOURCE = "adminapi"  # what asked for these jobs, in the metrics and logs
NAME_PATTERN_MESSAGE = "'Name' may only contain letters, numbers, spaces, and underscores."
TEMPLATE_MAX = 100


@dataclass(frozen=True)
class Flavour:
    """What differs between Admin API's v2 and v3 forms of the same routes."""

    version: str  # "v2" | "v3"
    resource: str  # odsInstances | dataStores
    entity: str  # the not-found message's name
    label: str  # the validation messages' name
    disabled_key: str  # the error key when management is turned off

    @property
    def path(self) -> str:
        return f"/{self.version}/{self.resource}/manage"

    @property
    def answers(self) -> Answers:
        return Answers("v2" if self.version == "v2" else "v3")


V2 = Flavour("v2", "odsInstances", "odsInstanceManage", "OdsInstanceManage", "OdsInstance")
V3 = Flavour("v3", "dataStores", "dataStoreManage", "DataStoreManage", "dataStore")


class ManageCreate(CamelModel):
    """Admin API's create body (property names are matched ignoring case)."""

    name: str
    database_template: str


class OdsInstanceManage(CamelModel):
    id: int
    name: str
    ods_instance_id: int | None
    ods_instance_name: str | None
    status: EdFiStatus
    database_template: str
    database_name: str | None
    last_refreshed: datetime
    last_modified_date: datetime | None


class DataStoreManage(CamelModel):
    id: int
    name: str
    data_store_id: int | None
    data_store_name: str | None
    status: EdFiStatus
    database_template: str
    database_name: str | None
    last_refreshed: datetime
    last_modified_date: datetime | None


def _out(flavour: Flavour, row: Row[Any]) -> OdsInstanceManage | DataStoreManage:
    common: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "status": to_edfi(row.status, row.job_status),
        "database_template": row.databasetemplate,
        "database_name": row.databasename,
        "last_refreshed": row.lastrefreshed,
        "last_modified_date": row.lastmodifieddate,
    }
    if flavour is V2:
        return OdsInstanceManage(
            ods_instance_id=row.odsinstanceid, ods_instance_name=row.odsinstancename, **common
        )
    return DataStoreManage(
        data_store_id=row.odsinstanceid, data_store_name=row.odsinstancename, **common
    )


def _rows() -> Any:
    return (
        select(db_instances, jobs.c.status.label("job_status"))
        .outerjoin(jobs, jobs.c.id == db_instances.c.currentjobid)
        .order_by(db_instances.c.id)
    )


def _whole(flavour: Flavour, value: str | None, what: str, *, low: int = 0) -> int | None:
    """A number in the path or query: digits only (Admin API binds it to an int)."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= MAX_ID:
        raise flavour.answers.malformed(
            f"{what} must be a whole number from {low} to {MAX_ID}, written with digits only "
            f"(got {value[:40]!r})"
        )
    return int(value)


async def _one(conn: AsyncConnection, instance_id: int) -> Row[Any] | None:
    row: Row[Any] | None = (
        await conn.execute(_rows().where(db_instances.c.id == instance_id))
    ).first()
    return row


# --- validation, as Admin API's FluentValidation rules say it ----------------------------------


def _strings(flavour: Flavour, raw: bytes) -> dict[str, str | None]:
    """The body's `name` and `databaseTemplate`, matched ignoring case; not JSON, not an object,
    or a value that is not a string is a malformed body (Admin API's binding fails the same)."""
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise flavour.answers.malformed() from None
    if not isinstance(body, dict):
        raise flavour.answers.malformed("The request body must be a JSON object.")
    found: dict[str, str | None] = {"name": None, "databasetemplate": None}
    for key, value in body.items():
        if key.lower() in found:
            if value is not None and not isinstance(value, str):
                raise flavour.answers.malformed(f"{key!r} must be a string.")
            found[key.lower()] = value
    return found


def check_create(
    name: str | None, template: str | None, templates: list[str]
) -> dict[str, list[str]]:
    """Admin API's rules and messages for a create (every rule runs), then this system's own
    rules for names people could not tell apart (on the trimmed name Admin API stores)."""
    errors: dict[str, list[str]] = {}
    names = errors.setdefault("Name", [])
    if name is None or not name.strip():
        names.append("'Name' must not be empty.")
    if name is not None and len(name) > MAX_NAME_LENGTH:
        names.append(
            f"'Name' must be {MAX_NAME_LENGTH} characters or fewer so the generated database "
            "name fits within the 63-character portable limit."
        )
    if name is not None and not _ed_fi_name(name):
        names.append(NAME_PATTERN_MESSAGE)
    if not names and name is not None:
        problem = name_problem(name.strip())
        if problem:
            names.append(f"'Name' {problem}.")
    kinds = errors.setdefault("DatabaseTemplate", [])
    if template is None or not template.strip():
        kinds.append("'Database Template' must not be empty.")
    if template is not None and len(template) > TEMPLATE_MAX:
        kinds.append(
            f"The length of 'Database Template' must be {TEMPLATE_MAX} characters or fewer. "
            f"You entered {len(template)} characters."
        )
    if template is None or template.strip() not in templates:
        kinds.append(
            f"'{template or ''}' is not a valid database template. Allowed values are: "
            f"{', '.join(templates)}."
        )
    return {key: messages for key, messages in errors.items() if messages}


def _ed_fi_name(name: str) -> bool:
    return bool(name) and all(c.isascii() and (c.isalnum() or c in " _") for c in name)


def _refused(flavour: Flavour, exc: RefusedError, key: str) -> EdFiError:
    """The rules' refusals in Admin API's validation shape, under `key`."""
    answers = flavour.answers
    if isinstance(exc, DisabledError):
        return answers.invalid({flavour.disabled_key: [exc.detail]}, setting=exc.setting)
    if isinstance(exc, InvalidError) and exc.errors:
        fields = {"name": "Name", "databaseTemplate": "DatabaseTemplate"}
        return answers.invalid({fields.get(k, k): v for k, v in exc.errors.items()})
    return answers.invalid({key: [_sentence(exc.detail)]}, **exc.extra)


def _sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


# Why a delete is refused, in Admin API's words, by the status Admin API would show.
DELETE_REFUSALS: dict[EdFiStatus, str] = {
    EdFiStatus.PENDING_CREATE: "{label} is being provisioned. Wait for creation to complete.",
    EdFiStatus.CREATE_IN_PROGRESS: (
        "{label} is currently being provisioned. Wait for creation to complete."
    ),
    EdFiStatus.PENDING_DELETE: "{label} is already queued for deletion.",
    EdFiStatus.DELETE_IN_PROGRESS: "{label} is currently being deleted.",
}


def _routes(flavour: Flavour, router: APIRouter) -> None:
    model = OdsInstanceManage if flavour is V2 else DataStoreManage
    tag = f"Admin API {flavour.version}: {flavour.resource}/manage"

    @router.get(
        flavour.path,
        response_model=list[model],  # type: ignore[valid-type]
        tags=[tag],
        summary=f"List instances as Admin API's {flavour.entity} rows (ordered by id)",
        description=(
            "Query: `offset` (default 0), `limit` (default 25, at most EDFI_IM_MAX_PAGE_SIZE), "
            "`id`, `name` (exact). Deleted instances are listed, as Admin API lists them."
        ),
        name=f"{flavour.version}_list_manage",
    )
    async def list_manage(request: Request) -> list[Any]:
        state = request_tenant(request)
        q = request.query_params
        offset = _whole(flavour, q.get("offset"), "offset") or 0
        limit = _whole(flavour, q.get("limit"), "limit")
        limit = 25 if limit is None else limit
        if limit > state.settings.max_page_size:
            raise flavour.answers.invalid(
                {"limit": [f"'limit' must be at most {state.settings.max_page_size}."]}
            )
        query = _rows().offset(offset).limit(limit)
        wanted = _whole(flavour, q.get("id"), "id")
        if wanted is not None:
            query = query.where(db_instances.c.id == wanted)
        if q.get("name") is not None:
            query = query.where(db_instances.c.name == q["name"])
        async with state.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_out(flavour, r) for r in rows]

    @router.get(
        flavour.path + "/{id}",
        response_model=model,
        tags=[tag],
        summary=f"One instance as Admin API's {flavour.entity}",
        responses={404: {"description": "No such instance"}},
        name=f"{flavour.version}_get_manage",
    )
    async def get_manage(id: str, request: Request) -> Any:
        instance_id = _whole(flavour, id, "id", low=1)
        assert instance_id is not None
        async with request_tenant(request).engine.connect() as conn:
            row = await _one(conn, instance_id)
        if row is None:
            raise flavour.answers.not_found(flavour.entity, instance_id)
        return _out(flavour, row)

    @router.post(
        flavour.path,
        status_code=202,
        tags=[tag],
        summary="Accept the creation of an instance (202, no body, Location ends in its id)",
        responses={
            202: {"description": "Accepted: `Location` names the new instance"},
            400: {"description": "Validation failed (Admin API's body)"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ManageCreate.model_json_schema()}},
            }
        },
        name=f"{flavour.version}_create_manage",
    )
    async def create_manage(request: Request) -> Response:
        state = request_tenant(request)
        body = _strings(flavour, await request.body())
        name, template = body["name"], body["databasetemplate"]
        templates = list(state.settings.templates)
        errors = check_create(name, template, templates)
        if errors:
            raise flavour.answers.invalid(errors)
        assert name is not None and template is not None
        name, template = name.strip(), template.strip()
        try:
            async with state.engine.begin() as conn:
                row = await accept_new_instance(conn, state, request, name, template, {})
        except ConflictError as exc:
            same = exc.detail.startswith("an instance named")
            message = f"An {flavour.label} named '{name}' already exists." if same else None
            raise (
                flavour.answers.invalid({"Name": [message]}, **exc.extra)
                if message
                else _refused(flavour, exc, "Name")
            ) from None
        except RefusedError as exc:
            raise _refused(flavour, exc, "Name") from None
        accepted(state, Operation.CREATE, SOURCE, row, name=row.name, api=flavour.version)
        location = f"{flavour.path}/{row.id}"
        if flavour is V3:  # v3 answers an absolute address, v2 a path
            location = str(request.base_url).rstrip("/") + location
        return Response(status_code=202, headers={"Location": location})

    @router.delete(
        flavour.path + "/{id}",
        status_code=204,
        tags=[tag],
        summary="Accept the deletion of an instance (204; its database is dropped by a job)",
        responses={
            400: {"description": "Refused in the instance's current status"},
            404: {"description": "No such instance, or already deleted"},
        },
        name=f"{flavour.version}_delete_manage",
    )
    async def delete_manage(id: str, request: Request) -> Response:
        state = request_tenant(request)
        instance_id = _whole(flavour, id, "id", low=1)
        assert instance_id is not None
        async with state.engine.connect() as conn:
            before = await _one(conn, instance_id)
        if before is None or to_edfi(before.status) is EdFiStatus.DELETED:
            raise flavour.answers.not_found(flavour.entity, instance_id)
        try:
            async with state.engine.begin() as conn:
                row = await accept_operation(
                    conn,
                    instance_id,
                    Operation.DELETE,
                    correlation_id=request.state.correlation_id,
                    tenant=state.tenant,
                    switch=state.settings.switch,
                )
        except NotFoundError:
            raise flavour.answers.not_found(flavour.entity, instance_id) from None
        except ConflictError as exc:
            async with state.engine.connect() as conn:
                now = await _one(conn, instance_id)
            status = to_edfi(now.status, now.job_status) if now is not None else None
            known = DELETE_REFUSALS.get(status) if status is not None else None
            if known is None:
                raise _refused(flavour, exc, "id") from None
            raise flavour.answers.invalid(
                {"id": [known.format(label=flavour.label)]}, **exc.extra
            ) from None
        except RefusedError as exc:
            raise _refused(flavour, exc, "id") from None
        accepted(state, Operation.DELETE, SOURCE, row, api=flavour.version)
        return Response(status_code=204)


def manage_router() -> APIRouter:
    router = APIRouter()
    for flavour in (V2, V3):
        _routes(flavour, router)
    return router
