"""Reads and the create unit of work on the admin database."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts.messages import InstanceRequested, Operation
from services.gateway.problems import ProblemError
from services.gateway.schemas import DbInstance, Job
from services.runtime import outbox
from services.runtime.states import InstanceStatus, JobStatus, JobType
from services.runtime.tables import db_instances, jobs
from services.runtime.topology import REQUESTS_EXCHANGE


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
        created_date=row.createdat,
        last_modified_date=row.lastmodifieddate,
        last_refreshed=row.lastrefreshed,
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
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        heartbeat_at=row.heartbeat_at,
        error=row.error,
        worker=row.worker,
        correlation_id=row.correlation_id,
    )


def live() -> Any:
    return db_instances.c.status != InstanceStatus.DELETED.value


async def _conflict(conn: AsyncConnection, name: str, database_name: str) -> ProblemError | None:
    row = (
        await conn.execute(
            select(db_instances.c.id, db_instances.c.name, db_instances.c.databasename)
            .where(live())
            .where(
                (func.lower(db_instances.c.name) == name.lower())
                | (func.lower(db_instances.c.databasename) == database_name.lower())
            )
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    if row.name.lower() == name.lower():
        detail = f"an instance named {row.name!r} already exists (id {row.id})"
    else:
        detail = (
            f"instance {row.id} ({row.name!r}) already uses database {row.databasename!r}, "
            f"which the name {name!r} maps to"
        )
    return ProblemError(
        409, "Conflict", detail, errors={"name": [detail]}, conflictingInstanceId=row.id
    )


async def accept_create(
    conn: AsyncConnection,
    *,
    name: str,
    template_key: str,
    template_database: str,
    database_name: str,
    correlation_id: str,
) -> Row[Any]:
    """Instance row, job and outbox command in the caller's one transaction."""
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
                    )
                    .returning(db_instances)
                )
            ).one()
    except IntegrityError:
        # A concurrent request took the name between the check and the insert.
        conflict = await _conflict(conn, name, database_name)
        raise conflict or ProblemError(409, "Conflict", f"{name!r} is taken") from None
    await conn.execute(
        insert(jobs).values(
            id=job_id,
            type=JobType.CREATE_INSTANCE.value,
            instance_id=row.id,
            status=JobStatus.PENDING.value,
            progress_message="Accepted",
            progress_percent=0,
            attempts=0,
            created_at=func.now(),
            correlation_id=correlation_id,
            data={"name": name, "databaseTemplate": template_key},
        )
    )
    command = InstanceRequested(
        job_id=job_id,
        instance_id=row.id,
        operation=Operation.CREATE,
        database_name=database_name,
        database_template=template_database,
        new_name=None,
    )
    await outbox.enqueue(
        conn,
        command,
        exchange=REQUESTS_EXCHANGE,
        routing_key=str(row.id),
        correlation_id=correlation_id,
    )
    created: Row[Any] = row
    return created
