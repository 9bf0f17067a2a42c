"""Rows as the API shows them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from services.gateway.schemas import DbInstance, Job


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
