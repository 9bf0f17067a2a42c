"""Accepting a job of any type, from an HTTP request or a schedule's fire: the same validation,
the same 409 rules, the same one transaction (rows + job + outbox message)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts.messages import MaintenanceRequested, MaintenanceTask, Operation
from services.admin_db.tables import db_instances, jobs
from services.gateway.problems import ProblemError, validation_problem
from services.gateway.repository import accept_create, accept_operation, start_job
from services.gateway.schemas import (
    CreateDbInstance,
    DeleteInstanceParameters,
    PruneParameters,
    ReconcileParameters,
    RenameInstanceParameters,
)
from services.rules.naming import database_name, database_name_problem
from services.rules.states import JobStatus, JobType
from services.runtime.settings import Settings
from services.runtime.topology import MAINTENANCE_EXCHANGE, MAINTENANCE_ROUTING_KEY

PARAMETERS: dict[JobType, type[BaseModel]] = {
    JobType.CREATE_INSTANCE: CreateDbInstance,
    JobType.RENAME_INSTANCE: RenameInstanceParameters,
    JobType.DELETE_INSTANCE: DeleteInstanceParameters,
    JobType.RECONCILE: ReconcileParameters,
    JobType.PRUNE: PruneParameters,
}
MAINTENANCE = {JobType.RECONCILE: MaintenanceTask.RECONCILE, JobType.PRUNE: MaintenanceTask.PRUNE}


def parse_parameters(job_type: JobType, raw: Any, field: str = "parameters") -> BaseModel:
    """The job's parameters as its model; a 422 naming each bad field (`field.name`, …)."""
    try:
        return PARAMETERS[job_type].model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        errors: dict[str, list[str]] = {}
        for err in exc.errors():
            where = ".".join([field, *(str(p) for p in err["loc"])])
            errors.setdefault(where, []).append(err["msg"])
        detail = "; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items())
        raise ProblemError(422, "Validation failed", detail, errors=errors) from None


def create_names(settings: Settings, name: str, template: str, field: str = "") -> tuple[str, str]:
    """(template database, new database name) of a create; 422 for an unknown template or a
    name whose database name would be too long."""
    template_database = settings.templates.get(template)
    if template_database is None:
        raise validation_problem(
            f"{field}databaseTemplate", f"must be one of {', '.join(sorted(settings.templates))}"
        )
    return template_database, checked_database_name(settings, name, field)


def checked_database_name(settings: Settings, name: str, field: str = "") -> str:
    db_name = database_name(name, settings.database_name_pattern)
    problem = database_name_problem(db_name)
    if problem:
        raise validation_problem(f"{field}name", problem)
    return db_name


@dataclass(frozen=True)
class CheckedJob:
    """A job's parameters, and the database names an instance job derives from them."""

    params: BaseModel
    template_database: str | None = None
    database_name: str | None = None


def check_job(
    settings: Settings, job_type: JobType, raw: Any, field: str = "parameters"
) -> CheckedJob:
    """Everything about a job that can be checked without the database: its parameters, its
    template and the length of its database name; a 422 naming `field.<name>` otherwise."""
    params = parse_parameters(job_type, raw, field)
    if isinstance(params, CreateDbInstance):
        template, db_name = create_names(
            settings, params.name, params.database_template, f"{field}."
        )
        return CheckedJob(params, template, db_name)
    if isinstance(params, RenameInstanceParameters):
        return CheckedJob(params, None, checked_database_name(settings, params.name, f"{field}."))
    return CheckedJob(params)


async def accept_job(
    conn: AsyncConnection,
    settings: Settings,
    job_type: JobType,
    raw_parameters: Any,
    *,
    correlation_id: str,
    schedule_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Validate and accept a job in the caller's transaction; its id. ProblemError if refused."""
    checked = check_job(settings, job_type, raw_parameters)
    params = checked.params
    if isinstance(params, CreateDbInstance):
        assert checked.template_database and checked.database_name
        row = await accept_create(
            conn,
            name=params.name,
            template_key=params.database_template,
            template_database=checked.template_database,
            database_name=checked.database_name,
            correlation_id=correlation_id,
            tenant=settings.tenant,
            schedule_id=schedule_id,
            details=params.stored(),
        )
    elif isinstance(params, RenameInstanceParameters):
        row = await accept_operation(
            conn,
            params.id,
            Operation.RENAME,
            correlation_id=correlation_id,
            tenant=settings.tenant,
            new_name=params.name,
            new_database_name=checked.database_name,
            schedule_id=schedule_id,
        )
    elif isinstance(params, DeleteInstanceParameters):
        row = await accept_operation(
            conn,
            params.id,
            Operation.DELETE,
            correlation_id=correlation_id,
            tenant=settings.tenant,
            schedule_id=schedule_id,
        )
    else:
        return await accept_maintenance(
            conn,
            MAINTENANCE[job_type],
            params.model_dump(mode="json"),
            correlation_id=correlation_id,
            tenant=settings.tenant,
            schedule_id=schedule_id,
        )
    job_id: uuid.UUID = row.currentjobid
    return job_id


async def accept_maintenance(
    conn: AsyncConnection,
    task: MaintenanceTask,
    parameters: dict[str, Any],
    *,
    correlation_id: str,
    tenant: str | None,
    schedule_id: uuid.UUID | None = None,
) -> uuid.UUID:
    command = MaintenanceRequested(
        job_id=uuid.uuid4(), tenant=tenant, task=task, parameters=parameters
    )
    await start_job(
        conn,
        command,
        job_type=task.value,
        instance_id=None,
        data=parameters,
        correlation_id=correlation_id,
        schedule_id=schedule_id,
        exchange=MAINTENANCE_EXCHANGE,
        routing_key=MAINTENANCE_ROUTING_KEY,
    )
    return command.job_id


async def cancel_job(conn: AsyncConnection, job_id: uuid.UUID) -> Any:
    """Cancel a job no worker has claimed: it ends `Cancelled` and its instance goes back to the
    status it had (a cancelled create's instance is `Deleted`: nothing was made). 409 once a
    worker has claimed it; the worker then skips nothing and the job runs to its end."""
    job = (await conn.execute(select(jobs.c.instance_id).where(jobs.c.id == job_id))).first()
    if job is None:
        raise ProblemError(404, "Not found", f"no job with id {job_id}")
    # Instance row first, then the job: the order every other writer locks them in.
    instance = None
    if job.instance_id is not None:
        instance = (
            await conn.execute(
                select(db_instances).where(db_instances.c.id == job.instance_id).with_for_update()
            )
        ).first()
    row = (await conn.execute(select(jobs).where(jobs.c.id == job_id).with_for_update())).one()
    if row.status != JobStatus.PENDING.value or row.claimed_at is not None:
        state = row.status if row.status != JobStatus.PENDING.value else "claimed by a worker"
        raise ProblemError(
            409,
            "Conflict",
            f"job {job_id} has already started ({state}); only a job that has not started can "
            "be cancelled",
            jobStatus=row.status,
        )
    updated = (
        await conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(
                status=JobStatus.CANCELLED.value,
                finished_at=func.now(),
                progress_message="Cancelled before it started",
            )
            .returning(jobs)
        )
    ).one()
    if instance is not None and instance.currentjobid == job_id:
        previous = (row.data or {}).get("previousStatus")
        restored = previous or "Deleted"  # a create has no previous status: nothing was made
        await conn.execute(
            update(db_instances)
            .where(db_instances.c.id == instance.id)
            .values(
                status=restored,
                pendingname=None,
                pendingdatabasename=None,
                error=None if previous else "the create was cancelled before it started",
                lastmodifieddate=func.now(),
                lastrefreshed=func.now(),
            )
        )
    return updated
