"""Rows as the API shows them."""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from pydantic_core import to_json
from sqlalchemy import Row

from services.gateway.schemas import DbInstance, Job

# A page's fields in DbInstance's order: (its JSON name, the dbinstances column it shows).
_PAGE_FIELDS = (
    ("id", "id"),
    ("name", "name"),
    ("status", "status"),
    ("databaseTemplate", "databasetemplate"),
    ("databaseName", "databasename"),
    ("jobId", "currentjobid"),
    ("odsInstanceId", "odsinstanceid"),
    ("odsInstanceName", "odsinstancename"),
    ("error", "error"),
    ("pendingName", "pendingname"),
    ("imported", "imported"),
    ("createdDate", "createdat"),
    ("lastModifiedDate", "lastmodifieddate"),
    ("lastRefreshed", "lastrefreshed"),
    ("instanceType", "instancetype"),
    ("odsInstanceContexts", "contexts"),
    ("odsInstanceDerivatives", "derivatives"),
)
_NAMES = tuple(name for name, _ in _PAGE_FIELDS)


def instance_page_json(rows: Sequence[Row[Any]]) -> bytes:
    """A page of instances as JSON: the bytes `list[DbInstance]` serialises to (camelCase, in
    its field order; tests/unit/test_views.py holds them equal), without building and
    validating a model per row, and reading each row by position (the page's largest costs
    after its SELECT)."""
    if not rows:
        return b"[]"
    position = {column: i for i, column in enumerate(rows[0]._fields)}
    values = itemgetter(*(position[column] for _, column in _PAGE_FIELDS))
    page = []
    for row in rows:
        item = dict(zip(_NAMES, values(row), strict=True))
        item["odsInstanceContexts"] = item["odsInstanceContexts"] or []
        item["odsInstanceDerivatives"] = item["odsInstanceDerivatives"] or []
        item["database"] = None
        page.append(item)
    return to_json(page)


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
