"""Reads and the units of work (instance row + job + outbox command, one transaction)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts.messages import Envelope, InstanceRequested, Operation
from services.admin_db.tables import db_instances, jobs
from services.gateway.problems import ProblemError
from services.gateway.schemas import DbInstance, Job
from services.rules.states import (
    JOB_TYPE,
    PENDING,
    InstanceStatus,
    JobStatus,
    check_request,
)
from services.runtime import outbox
from services.runtime.topology import REQUESTS_EXCHANGE, instance_routing_key

# Serialises the operations that claim the same name or database name (create, rename), so two
# of them cannot both see it free; operations on other names do not wait for each other.
# pg advisory lock class "edfi-im names" (first key of the two-key form).
NAME_LOCK_CLASS = 0x0ED1F4


def instance_out(row: Row[Any]) -> DbInstance:
    return DbInstance(
        id=row.id,
        name=row.name,
        status=row.status,
        database_template=row.databasetemplate,
        database_name=row.databasename,
        job_id=row.currentjobid,
        ods_instance_id=row.odsinstanceid,
        ods_instance_name=row.odsinstancename,
        error=row.error,
        pending_name=row.pendingname,
        imported=row.imported,
        created_date=row.createdat,
        last_modified_date=row.lastmodifieddate,
        last_refreshed=row.lastrefreshed,
        instance_type=row.instancetype,
        ods_instance_contexts=row.contexts or [],
        ods_instance_derivatives=row.derivatives or [],
    )


def job_out(row: Row[Any]) -> Job:
    return Job(
        id=row.id,
        type=row.type,
        instance_id=row.instance_id,
        status=row.status,
        progress_message=row.progress_message,
        progress_percent=row.progress_percent,
        attempts=row.attempts,
        recoveries=row.recoveries,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        heartbeat_at=row.heartbeat_at,
        error=row.error,
        worker=row.worker,
        correlation_id=row.correlation_id,
        schedule_id=row.schedule_id,
        parameters=row.data or {},
        result=row.result,
    )


def live() -> Any:
    return db_instances.c.status != InstanceStatus.DELETED.value


async def _lock_names(conn: AsyncConnection, name: str, database_name: str) -> None:
    """Transaction locks on the name and the database name (ignoring case), taken in one order
    so that two operations never wait for each other in a circle."""
    keys = sorted({_name_key(name), _name_key(database_name)})
    for key in keys:
        await conn.execute(select(func.pg_advisory_xact_lock(NAME_LOCK_CLASS, key)))


def _name_key(value: str) -> int:
    """A stable 32-bit key of a name; two names sharing one only wait for each other."""
    digest = hashlib.blake2b(value.lower().encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


async def _conflict(
    conn: AsyncConnection, name: str, database_name: str, exclude_id: int | None = None
) -> ProblemError | None:
    """A live instance that has, or is being renamed to, this name or database name."""
    d = db_instances.c
    query = (
        select(d.id, d.name, d.databasename, d.pendingname, d.pendingdatabasename)
        .where(live())
        .where(
            (func.lower(d.name) == name.lower())
            | (func.lower(d.databasename) == database_name.lower())
            | (func.lower(d.pendingname) == name.lower())
            | (func.lower(d.pendingdatabasename) == database_name.lower())
        )
        .limit(1)
    )
    if exclude_id is not None:
        query = query.where(d.id != exclude_id)
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    if row.name.lower() == name.lower():
        detail = f"an instance named {row.name!r} already exists (id {row.id})"
    elif (row.pendingname or "").lower() == name.lower():
        detail = f"instance {row.id} is being renamed to {row.pendingname!r}"
    else:
        detail = (
            f"instance {row.id} ({row.name!r}) already uses the database the name {name!r} "
            f"maps to ({database_name!r})"
        )
    return ProblemError(
        409, "Conflict", detail, errors={"name": [detail]}, conflictingInstanceId=row.id
    )


INSERT_JOB = insert(jobs).values(
    status=JobStatus.PENDING.value,
    progress_message="Accepted",
    progress_percent=0,
    attempts=0,
    created_at=func.now(),
    recoveries=0,
)


async def start_job(
    conn: AsyncConnection,
    command: Envelope,
    *,
    job_type: str,
    instance_id: int | None,
    data: dict[str, Any],
    correlation_id: str,
    schedule_id: uuid.UUID | None,
    exchange: str,
    routing_key: str,
) -> None:
    """The job row (Pending) and its command in the outbox, in the caller's transaction."""
    await conn.execute(
        INSERT_JOB,
        {
            "id": command.job_id,
            "type": job_type,
            "instance_id": instance_id,
            "correlation_id": correlation_id,
            "data": data,
            "command": command.model_dump(mode="json"),
            "schedule_id": schedule_id,
        },
    )
    await outbox.enqueue(
        conn, command, exchange=exchange, routing_key=routing_key, correlation_id=correlation_id
    )


async def _start_job(
    conn: AsyncConnection,
    *,
    job_id: uuid.UUID,
    operation: Operation,
    instance_id: int,
    correlation_id: str,
    data: dict[str, Any],
    command: InstanceRequested,
    schedule_id: uuid.UUID | None,
) -> None:
    assert command.job_id == job_id
    await start_job(
        conn,
        command,
        job_type=JOB_TYPE[operation].value,
        instance_id=instance_id,
        data=data,
        correlation_id=correlation_id,
        schedule_id=schedule_id,
        exchange=REQUESTS_EXCHANGE,
        routing_key=instance_routing_key(command.tenant, instance_id),
    )


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
) -> Row[Any]:
    """Instance row, job and outbox command in the caller's one transaction. `details`: the
    instance type, contexts and derivatives (InstanceDetails.stored()), for dbo on completion."""
    details = details or {}
    await _lock_names(conn, name, database_name)
    conflict = await _conflict(conn, name, database_name)
    if conflict:
        raise conflict
    job_id = uuid.uuid4()
    try:
        async with conn.begin_nested():
            row = (
                await conn.execute(
                    insert(db_instances)
                    .values(
                        name=name,
                        status=InstanceStatus.PENDING.value,
                        databasetemplate=template_key,
                        databasename=database_name,
                        currentjobid=job_id,
                        lastrefreshed=func.now(),
                        lastmodifieddate=func.now(),
                        createdat=func.now(),
                        imported=False,
                        **details,
                    )
                    .returning(db_instances)
                )
            ).one()
    except IntegrityError:
        conflict = await _conflict(conn, name, database_name)
        raise conflict or ProblemError(409, "Conflict", f"{name!r} is taken") from None
    await _start_job(
        conn,
        job_id=job_id,
        operation=Operation.CREATE,
        instance_id=row.id,
        correlation_id=correlation_id,
        data={"name": name, "databaseTemplate": template_key} | _detail_data(details),
        command=InstanceRequested(
            job_id=job_id,
            tenant=tenant,
            instance_id=row.id,
            operation=Operation.CREATE,
            database_name=database_name,
            database_template=template_database,
        ),
        schedule_id=schedule_id,
    )
    created: Row[Any] = row
    return created


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
) -> Row[Any]:
    """Accept a rename or delete: check the rules under the instance's row lock, then write the
    new status, the job and the command in the caller's transaction."""
    if operation is Operation.RENAME:
        assert new_name is not None and new_database_name is not None
        await _lock_names(conn, new_name, new_database_name)
    row = (
        await conn.execute(
            select(db_instances).where(db_instances.c.id == instance_id).with_for_update()
        )
    ).first()
    if row is None:
        raise ProblemError(404, "Not found", f"no instance with id {instance_id}")
    refusal = check_request(operation, InstanceStatus(row.status))
    if refusal is not None:
        if refusal.http_status == 404:
            raise ProblemError(404, "Not found", f"instance {instance_id} was deleted")
        extra: dict[str, Any] = {"status": 409, "instanceStatus": row.status}
        detail = f"instance {instance_id}: {refusal.reason}"
        if refusal.in_flight is not None:
            detail += f" (job {row.currentjobid})"
            extra = {
                "inFlightOperation": refusal.in_flight.value,
                "jobId": str(row.currentjobid),
                "instanceStatus": row.status,
            }
        else:
            extra.pop("status")
        raise ProblemError(409, "Conflict", detail, **extra)
    if row.databasename is None:
        raise ProblemError(
            409,
            "Conflict",
            f"instance {instance_id}'s database is not known (its connection string could "
            "not be read), so it cannot be changed safely",
        )
    # The status it had, for a cancel to put back.
    data: dict[str, Any] = {"id": instance_id, "previousStatus": row.status}
    values: dict[str, Any] = {}
    if operation is Operation.RENAME:
        assert new_name is not None and new_database_name is not None
        if new_name == row.name:
            raise ProblemError(
                409,
                "Conflict",
                f"instance {instance_id} is already named {new_name!r}",
                errors={"name": ["is the current name"]},
            )
        conflict = await _conflict(conn, new_name, new_database_name, exclude_id=instance_id)
        if conflict:
            raise conflict
        data |= {"name": new_name, "previousName": row.name}
        values = {"pendingname": new_name, "pendingdatabasename": new_database_name}
    job_id = uuid.uuid4()
    updated = (
        await conn.execute(
            update(db_instances)
            .where(db_instances.c.id == instance_id)
            .values(
                status=PENDING[operation].value,
                currentjobid=job_id,
                error=None,
                lastmodifieddate=func.now(),
                lastrefreshed=func.now(),
                **values,
            )
            .returning(db_instances)
        )
    ).one()
    await _start_job(
        conn,
        job_id=job_id,
        operation=operation,
        instance_id=instance_id,
        correlation_id=correlation_id,
        data=data,
        command=InstanceRequested(
            job_id=job_id,
            tenant=tenant,
            instance_id=instance_id,
            operation=operation,
            database_name=row.databasename,
            new_name=new_name,
            new_database_name=new_database_name,
            expect_database=row.odsinstanceid is not None,
        ),
        schedule_id=schedule_id,
    )
    result: Row[Any] = updated
    return result
