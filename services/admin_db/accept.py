"""Accepting a job: the one unit of work that writes an instance's new status, its job and the
job's command in the outbox, in the caller's transaction (invariant 1), whoever asks (an HTTP
request, a schedule's fire). The same rules and the same refusals for every caller; refusals
are the rules' own exceptions (NotFoundError, ConflictError, InvalidError), which each caller
turns into its own answer (a problem document, a failed schedule run)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts.messages import (
    Envelope,
    InstanceRequested,
    MaintenanceRequested,
    MaintenanceTask,
    Operation,
)
from services.admin_db import instances, jobs, outbox
from services.rules.errors import ConflictError, NotFoundError
from services.rules.parameters import (
    MAINTENANCE,
    CreateDbInstance,
    DeleteInstanceParameters,
    NamingSettings,
    RenameInstanceParameters,
    check_job,
)
from services.rules.states import (
    JOB_TYPE,
    InstanceStatus,
    JobStatus,
    JobType,
    Switch,
    check_request,
)
from services.runtime.topology import (
    MAINTENANCE_EXCHANGE,
    MAINTENANCE_ROUTING_KEY,
    REQUESTS_EXCHANGE,
    instance_routing_key,
)


def _job_rows(
    command: Envelope,
    *,
    job_type: str,
    instance_id: int | None,
    data: dict[str, Any],
    correlation_id: str,
    schedule_id: uuid.UUID | None,
    exchange: str,
    routing_key: str,
) -> tuple[tuple[Any, dict[str, Any]], dict[str, Any]]:
    """A new job's row, Pending (`jobs.new_job`), and its command's outbox row
    (`outbox.message_values`)."""
    job = jobs.new_job(
        job_id=command.job_id,
        job_type=job_type,
        instance_id=instance_id,
        data=data,
        command=command.model_dump(mode="json"),
        correlation_id=correlation_id,
        schedule_id=schedule_id,
    )
    message = outbox.message_values(
        command, exchange=exchange, routing_key=routing_key, correlation_id=correlation_id
    )
    return job, message


def _instance_job_rows(
    command: InstanceRequested,
    *,
    correlation_id: str,
    data: dict[str, Any],
    schedule_id: uuid.UUID | None,
) -> tuple[tuple[Any, dict[str, Any]], dict[str, Any]]:
    """An instance job's rows: its command goes to the instance's shard."""
    return _job_rows(
        command,
        job_type=JOB_TYPE[command.operation].value,
        instance_id=command.instance_id,
        data=data,
        correlation_id=correlation_id,
        schedule_id=schedule_id,
        exchange=REQUESTS_EXCHANGE,
        routing_key=instance_routing_key(command.tenant, command.instance_id),
    )


async def _start_instance_job(
    conn: AsyncConnection,
    command: InstanceRequested,
    *,
    correlation_id: str,
    data: dict[str, Any],
    schedule_id: uuid.UUID | None,
) -> None:
    """The job row (Pending) and its command in the outbox (one statement on PostgreSQL)."""
    job, message = _instance_job_rows(
        command, correlation_id=correlation_id, data=data, schedule_id=schedule_id
    )
    await outbox.add(conn, message, along=job)


def _detail_data(details: dict[str, Any]) -> dict[str, Any]:
    """The details as the job's parameters show them (camelCase, only those given)."""
    data: dict[str, Any] = {}
    if details.get("instancetype"):
        data["instanceType"] = details["instancetype"]
    if details.get("contexts"):
        data["odsInstanceContexts"] = details["contexts"]
    if details.get("derivatives"):
        data["odsInstanceDerivatives"] = details["derivatives"]
    return data


async def accept_create(
    conn: AsyncConnection,
    *,
    name: str,
    template_key: str,
    template_database: str,
    database_name: str,
    correlation_id: str,
    tenant: str | None,
    schedule_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
    switch: Switch,
    source: int | None = None,
    end_source_sessions: bool = False,
) -> Row[Any]:
    """A create: the instance row, its job and the command. `details`: the instance type,
    contexts and derivatives (InstanceDetails.stored()), for dbo on completion. A copy names
    its `source` instance, whose database is then the template (`template_database` unused)."""
    switch.check(Operation.CREATE)
    details = details or {}
    job_id = uuid.uuid4()
    # PostgreSQL: the new instance's id comes with the name locks (not for a copy: its source
    # is checked between the name check and the insert).
    reserved = await instances.lock_names(conn, name, database_name, reserve_id=source is None)
    data = {"name": name, "databaseTemplate": template_key} | _detail_data(details)
    pending: dict[str, Any] = {
        "name": name,
        "template_key": template_key,
        "database_name": database_name,
        "job_id": job_id,
        "details": details,
    }

    def command(instance_id: int) -> InstanceRequested:
        return InstanceRequested(
            job_id=job_id,
            tenant=tenant,
            instance_id=instance_id,
            operation=Operation.CREATE,
            database_name=database_name,
            database_template=template_database,
            source_instance_id=source,
            end_source_sessions=end_source_sessions,
        )

    if reserved is not None:
        # Both names free (the common case): checked, and the instance, its job and its
        # command written, in one statement; nothing of them when a name is held.
        along = _job_and_command(
            command(reserved), correlation_id=correlation_id, data=data, schedule_id=schedule_id
        )
        row = await instances.add_pending_if_free(
            conn, instance_id=reserved, **pending, along=along
        )
        if row is not None:
            return row
    await _free_names(conn, name, database_name, job_id)
    if source is not None:
        template_database = await _copy_source(conn, source)
        data |= {"copyOf": source, "endSourceSessions": end_source_sessions}
    row = await instances.add_pending(conn, **pending)
    await _start_instance_job(
        conn, command(row.id), correlation_id=correlation_id, data=data, schedule_id=schedule_id
    )
    return row


def _job_and_command(
    command: InstanceRequested,
    *,
    correlation_id: str,
    data: dict[str, Any],
    schedule_id: uuid.UUID | None,
) -> tuple[instances.Along, ...]:
    """An instance job's row and its command, for the statement that writes the instance."""
    (_, job_values), message = _instance_job_rows(
        command, correlation_id=correlation_id, data=data, schedule_id=schedule_id
    )
    return (jobs.new_job_with, job_values), (outbox.enqueue_with, message)


async def _free_names(
    conn: AsyncConnection, name: str, database_name: str, job_id: uuid.UUID
) -> None:
    """The ConflictError of a live instance holding the name or database name; an instance
    whose create failed before it made a database gives them up (it is retired), so that
    creating again is how a failed create is recovered from (the Admin Console can do nothing
    else)."""
    for _ in range(3):  # the name, the database name, a pending name: at most three holders
        found = await instances.conflict(conn, name, database_name)
        if found is None:
            return
        holder = found.extra["conflictingInstanceId"]
        reason = f"retired: a new create of {name!r} (job {job_id}) took its name"
        if not await instances.retire_failed_create(conn, int(str(holder)), reason):
            raise found
    found = await instances.conflict(conn, name, database_name)
    if found is not None:
        raise found


async def _copy_source(conn: AsyncConnection, source: int) -> str:
    """The database of the instance a copy reads: it must be Completed (no operation in
    flight), and stays locked (shared) until the copy's job is written."""
    row = await instances.lock(conn, source, shared=True)
    if row is None or row.status == InstanceStatus.DELETED.value:
        raise NotFoundError(f"no instance with id {source} to copy")
    if row.status != InstanceStatus.COMPLETED.value or not row.databasename:
        raise ConflictError(
            f"instance {source} is {row.status}: only a Completed instance can be copied",
            instanceStatus=row.status,
        )
    database: str = row.databasename
    return database


async def accept_operation(
    conn: AsyncConnection,
    instance_id: int,
    operation: Operation,
    *,
    correlation_id: str,
    tenant: str | None,
    new_name: str | None = None,
    new_database_name: str | None = None,
    schedule_id: uuid.UUID | None = None,
    switch: Switch,
) -> Row[Any]:
    """A rename or delete: the rules checked under the instance's row lock, then its new
    status, its job and the command."""
    switch.check(operation)
    if operation is Operation.RENAME:
        assert new_name is not None and new_database_name is not None
        await instances.lock_names(conn, new_name, new_database_name)
    row = await instances.lock(conn, instance_id)
    if row is None:
        raise NotFoundError(f"no instance with id {instance_id}")
    refusal = check_request(operation, InstanceStatus(row.status))
    if refusal is not None:
        if refusal.http_status == 404:
            raise NotFoundError(f"instance {instance_id} was deleted")
        detail = f"instance {instance_id}: {refusal.reason}"
        if refusal.in_flight is not None:
            raise ConflictError(
                f"{detail} (job {row.currentjobid})",
                inFlightOperation=refusal.in_flight.value,
                jobId=str(row.currentjobid),
                instanceStatus=row.status,
            )
        raise ConflictError(detail, instanceStatus=row.status)
    if row.databasename is None:
        raise ConflictError(
            f"instance {instance_id}'s database is not known (its connection string could "
            "not be read), so it cannot be changed safely"
        )
    # The status it had, for a cancel to put back.
    data: dict[str, Any] = {"id": instance_id, "previousStatus": row.status}
    if operation is Operation.RENAME:
        assert new_name is not None and new_database_name is not None
        if new_name == row.name:
            raise ConflictError(
                f"instance {instance_id} is already named {new_name!r}",
                errors={"name": ["is the current name"]},
            )
        found = await instances.conflict(conn, new_name, new_database_name, exclude_id=instance_id)
        if found:
            raise found
        data |= {"name": new_name, "previousName": row.name}
    job_id = uuid.uuid4()
    updated = await instances.begin_operation(
        conn,
        instance_id,
        operation,
        job_id,
        pending_name=new_name,
        pending_database_name=new_database_name,
    )
    await _start_instance_job(
        conn,
        InstanceRequested(
            job_id=job_id,
            tenant=tenant,
            instance_id=instance_id,
            operation=operation,
            database_name=row.databasename,
            new_name=new_name,
            new_database_name=new_database_name,
            expect_database=row.odsinstanceid is not None,
        ),
        correlation_id=correlation_id,
        data=data,
        schedule_id=schedule_id,
    )
    return updated


async def accept_maintenance(
    conn: AsyncConnection,
    task: MaintenanceTask,
    parameters: dict[str, Any],
    *,
    correlation_id: str,
    tenant: str | None,
    schedule_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """A maintenance job (reconcile, prune) and its command for the scheduler's workers."""
    command = MaintenanceRequested(
        job_id=uuid.uuid4(), tenant=tenant, task=task, parameters=parameters
    )
    job, message = _job_rows(
        command,
        job_type=task.value,
        instance_id=None,
        data=parameters,
        correlation_id=correlation_id,
        schedule_id=schedule_id,
        exchange=MAINTENANCE_EXCHANGE,
        routing_key=MAINTENANCE_ROUTING_KEY,
    )
    await outbox.add(conn, message, along=job)
    return command.job_id


async def accept_job(
    conn: AsyncConnection,
    settings: NamingSettings,
    tenant: str | None,
    job_type: JobType,
    raw_parameters: Any,
    *,
    correlation_id: str,
    schedule_id: uuid.UUID | None = None,
    switch: Switch,
) -> uuid.UUID:
    """Any job from its type and raw parameters (a schedule's fire): checked as an HTTP request
    would be, then accepted. Its id; a RefusedError if refused."""
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
            tenant=tenant,
            schedule_id=schedule_id,
            details=params.stored(),
            switch=switch,
        )
    elif isinstance(params, RenameInstanceParameters):
        row = await accept_operation(
            conn,
            params.id,
            Operation.RENAME,
            correlation_id=correlation_id,
            tenant=tenant,
            new_name=params.name,
            new_database_name=checked.database_name,
            schedule_id=schedule_id,
            switch=switch,
        )
    elif isinstance(params, DeleteInstanceParameters):
        row = await accept_operation(
            conn,
            params.id,
            Operation.DELETE,
            correlation_id=correlation_id,
            tenant=tenant,
            schedule_id=schedule_id,
            switch=switch,
        )
    else:
        return await accept_maintenance(
            conn,
            MAINTENANCE[job_type],
            # camelCase, as the schedule stores them and the maintenance worker reads them
            # (`olderThanDays`): snake_case keys were ignored, and prune used the default.
            params.model_dump(mode="json", by_alias=True),
            correlation_id=correlation_id,
            tenant=tenant,
            schedule_id=schedule_id,
        )
    job_id: uuid.UUID = row.currentjobid
    return job_id


async def cancel_job(conn: AsyncConnection, job_id: uuid.UUID) -> Row[Any]:
    """Cancel a job no worker has claimed: it ends `Cancelled` and its instance goes back to the
    status it had (a cancelled create's instance is `Deleted`: nothing was made). A
    ConflictError once a worker has claimed it; the job then runs to its end."""
    found = await conn.execute(jobs.instance_of(job_id))
    job = found.first()
    if job is None:
        raise NotFoundError(f"no job with id {job_id}")
    # Instance row first, then the job: the order every other writer locks them in.
    instance = None if job.instance_id is None else await instances.lock(conn, job.instance_id)
    row = await jobs.lock(conn, job_id)
    assert row is not None
    if row.status != JobStatus.PENDING.value or row.claimed_at is not None:
        state = row.status if row.status != JobStatus.PENDING.value else "claimed by a worker"
        raise ConflictError(
            f"job {job_id} has already started ({state}); only a job that has not started can "
            "be cancelled",
            jobStatus=row.status,
        )
    cancelled = await jobs.cancel(conn, job_id)
    if instance is not None and instance.currentjobid == job_id:
        await instances.put_back(conn, instance.id, (row.data or {}).get("previousStatus"))
    return cancelled
