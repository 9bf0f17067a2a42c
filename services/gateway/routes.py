"""`/v2/dbInstances` and `/v2/jobs`."""

from __future__ import annotations

import functools
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BeforeValidator, TypeAdapter
from sqlalchemy import Integer, Row, String, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts.messages import Operation
from services.admin_db.accept import accept_create, accept_operation, cancel_job
from services.admin_db.engine import read_all, unit_of_work
from services.admin_db.tables import db_instances, jobs
from services.admin_db.tenants import TenantDatabase
from services.gateway.facts import facts_of
from services.gateway.problems import ProblemError, validation_problem
from services.gateway.schemas import CreateDbInstance, DbInstance, Job, RenameDbInstance
from services.gateway.state import request_tenant
from services.gateway.views import instance_out, instance_page_json, job_out
from services.rules.parameters import checked_database_name, create_names
from services.rules.states import JOB_TYPE, InstanceStatus, JobStatus, JobType
from services.runtime.logging import get_logger
from services.runtime.metrics import JOBS_ACCEPTED, job_finished

log = get_logger(__name__)
router = APIRouter(prefix="/v2")

# Ids are PostgreSQL INT: anything outside it cannot name a row (422, not a database error).
MAX_ID = 2_147_483_647


def digits_only(value: object) -> object:
    """A number in a path or query is its digits and nothing else (`1%20` is not instance 1)."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("must be a whole number written with digits only")
    return value


Digits = BeforeValidator(digits_only)
InstanceId = Annotated[int, Digits, Path(ge=1, le=MAX_ID, description="The instance's id")]
Offset = Annotated[int, Digits, Query(ge=0, le=MAX_ID, description="Rows to skip")]
Limit = Annotated[
    int, Digits, Query(ge=1, le=10_000, description="Page size (capped by a setting)")
]

PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}

# One instance, one job (built once: a request binds the id).
_INSTANCE = select(db_instances).where(
    db_instances.c.id == bindparam("p_id", type_=db_instances.c.id.type)
)
_JOB = select(jobs).where(jobs.c.id == bindparam("p_id", type_=jobs.c.id.type))


JOBS = TypeAdapter(list[Job])


def page_response(adapter: TypeAdapter[Any], items: list[Any]) -> Response:
    """A page as JSON, serialised once, as its response model (camelCase) documents it (a list
    returned as models would be validated again, field by field, then serialised)."""
    return Response(adapter.dump_json(items, by_alias=True), media_type="application/json")


def page_limit(state: TenantDatabase, limit: int) -> int:
    if limit > state.settings.max_page_size:
        raise validation_problem("limit", f"must be at most {state.settings.max_page_size}")
    return limit


async def accept_new_instance(
    conn: AsyncConnection,
    state: TenantDatabase,
    request: Request,
    name: str,
    template: str,
    details: dict[str, Any],
) -> Row[Any]:
    """A create from an HTTP request (/v2 or the Admin Console), in the caller's transaction:
    its template and database name checked, then the instance, job and command written."""
    template_database, db_name = create_names(state.settings, name, template)
    return await accept_create(
        conn,
        name=name,
        template_key=template,
        template_database=template_database,
        database_name=db_name,
        correlation_id=request.state.correlation_id,
        tenant=state.tenant,
        details=details,
        switch=state.settings.switch,
    )


def accepted(
    state: TenantDatabase, operation: Operation, source: str, row: Row[Any], **fields: Any
) -> None:
    """After the job's transaction commits: its command goes out now; it is counted and logged."""
    state.relay.wake()
    JOBS_ACCEPTED.labels(JOB_TYPE[operation].value, source).inc()
    log.info(
        f"{operation.value} accepted",
        source=source,
        instance_id=row.id,
        job_id=str(row.currentjobid),
        **fields,
    )


@router.post(
    "/dbInstances",
    status_code=202,
    response_model=DbInstance,
    responses={409: PROBLEM, 422: PROBLEM},
    summary="Accept the creation of an ODS instance",
)
async def create_db_instance(
    body: CreateDbInstance, request: Request, response: Response
) -> DbInstance:
    state = request_tenant(request)
    row = await unit_of_work(
        state.engine,
        lambda conn: accept_new_instance(
            conn, state, request, body.name, body.database_template, body.stored()
        ),
    )
    accepted(state, Operation.CREATE, "api", row, name=row.name, database_name=row.databasename)
    response.headers["Location"] = f"/v2/dbInstances/{row.id}"
    return instance_out(row)


@router.put(
    "/dbInstances/{instance_id}",
    status_code=202,
    response_model=DbInstance,
    responses={404: PROBLEM, 409: PROBLEM, 422: PROBLEM},
    summary="Accept the rename of an instance (and of its database)",
)
async def rename_db_instance(
    instance_id: InstanceId, body: RenameDbInstance, request: Request, response: Response
) -> DbInstance:
    new_database = checked_database_name(request_tenant(request).settings, body.name)
    return await _accept(
        request,
        response,
        instance_id,
        Operation.RENAME,
        new_name=body.name,
        new_database_name=new_database,
    )


@router.delete(
    "/dbInstances/{instance_id}",
    status_code=202,
    response_model=DbInstance,
    responses={404: PROBLEM, 409: PROBLEM},
    summary="Accept the deletion of an instance: its database is dropped, its row kept",
)
async def delete_db_instance(
    instance_id: InstanceId, request: Request, response: Response
) -> DbInstance:
    return await _accept(request, response, instance_id, Operation.DELETE)


async def _accept(
    request: Request,
    response: Response,
    instance_id: int,
    operation: Operation,
    new_name: str | None = None,
    new_database_name: str | None = None,
) -> DbInstance:
    state = request_tenant(request)
    row = await unit_of_work(
        state.engine,
        lambda conn: accept_operation(
            conn,
            instance_id,
            operation,
            correlation_id=request.state.correlation_id,
            tenant=state.tenant,
            new_name=new_name,
            new_database_name=new_database_name,
            switch=state.settings.switch,
        ),
    )
    accepted(state, operation, "api", row, new_name=new_name)
    response.headers["Location"] = f"/v2/dbInstances/{instance_id}"
    return instance_out(row)


@router.get("/dbInstances", response_model=list[DbInstance], responses={422: PROBLEM})
async def list_db_instances(
    request: Request,
    offset: Offset = 0,
    limit: Limit = 25,
    status: Annotated[InstanceStatus | None, Query(description="Only this status")] = None,
) -> Response:
    state = request_tenant(request)
    values: dict[str, Any] = {"offset": offset, "limit": page_limit(state, limit)}
    if status is not None:
        values["status"] = status.value
    rows = await read_all(state.engine, _instance_page(status is not None), values)
    return Response(instance_page_json(rows), media_type="application/json")


@functools.cache
def _instance_page(by_status: bool) -> Any:
    """The page's ids first (an index-only scan of the primary key skips the offset's rows
    without reading them), then those rows: the same rows, in the same order, as
    `SELECT * … ORDER BY id OFFSET … LIMIT …`, which reads every row it skips. Built once
    (bound `offset`, `limit`, `status`): a request only binds values."""
    d = db_instances.c
    ids = (
        select(d.id)
        .order_by(d.id)
        .offset(bindparam("offset", type_=Integer))
        .limit(bindparam("limit", type_=Integer))
    )
    if by_status:
        ids = ids.where(d.status == bindparam("status", type_=String))
    return select(db_instances).where(d.id.in_(ids)).order_by(d.id)


@router.get(
    "/dbInstances/{instance_id}",
    response_model=DbInstance,
    responses={404: PROBLEM},
    summary="One instance, with its database's size, state and sessions read from the ODS "
    "server (within EDFI_IM_INSTANCE_FACTS_TIMEOUT_SECONDS; `database.unavailable` says why not)",
)
async def get_db_instance(instance_id: InstanceId, request: Request) -> DbInstance:
    state = request_tenant(request)
    found = await read_all(state.engine, _INSTANCE, {"p_id": instance_id})
    row = found[0] if found else None
    if row is None:
        raise ProblemError(404, "Not found", f"no instance with id {instance_id}")
    out = instance_out(row)
    out.database = await facts_of(state, row)
    return out


@router.get("/jobs", response_model=list[Job], responses={422: PROBLEM})
async def list_jobs(
    request: Request,
    offset: Offset = 0,
    limit: Limit = 25,
    status: Annotated[JobStatus | None, Query()] = None,
    instance_id: Annotated[int | None, Query(alias="instanceId", ge=1, le=MAX_ID)] = None,
    type: Annotated[JobType | None, Query(description="Only jobs of this type")] = None,
    schedule_id: Annotated[
        uuid.UUID | None, Query(alias="scheduleId", description="Only jobs this schedule fired")
    ] = None,
) -> Response:
    state = request_tenant(request)
    query = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id).offset(offset)
    query = query.limit(page_limit(state, limit))
    if status is not None:
        query = query.where(jobs.c.status == status.value)
    if instance_id is not None:
        query = query.where(jobs.c.instance_id == instance_id)
    if type is not None:
        query = query.where(jobs.c.type == type.value)
    if schedule_id is not None:
        query = query.where(jobs.c.schedule_id == schedule_id)
    rows = await read_all(state.engine, query)
    return page_response(JOBS, [job_out(r) for r in rows])


@router.get("/jobs/{job_id}", response_model=Job, responses={404: PROBLEM})
async def get_job(job_id: uuid.UUID, request: Request) -> Job:
    found = await read_all(request_tenant(request).engine, _JOB, {"p_id": job_id})
    row = found[0] if found else None
    if row is None:
        raise ProblemError(404, "Not found", f"no job with id {job_id}")
    return job_out(row)


@router.delete(
    "/jobs/{job_id}",
    response_model=Job,
    responses={404: PROBLEM, 409: PROBLEM},
    summary="Cancel a job that has not started (409 once a worker has begun it)",
)
async def delete_job(job_id: uuid.UUID, request: Request) -> Job:
    async with request_tenant(request).engine.begin() as conn:
        row = await cancel_job(conn, job_id)
    job_finished(row.type, row.status, row.created_at, row.finished_at)
    log.info("job cancelled", job_id=str(job_id), instance_id=row.instance_id)
    return job_out(row)
