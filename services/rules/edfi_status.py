"""One mapping between this system's instance statuses and those of Ed-Fi's ODS-Admin-API
(`OdsInstanceManageStatus`: PendingCreate, CreateInProgress, Created, CreateFailed, CreateError,
PendingDelete, DeleteInProgress, Deleted, DeleteFailed, DeleteError), both ways.

Ed-Fi's `*Failed` statuses mean "will be retried automatically", its `*Error` ones "failed for
good; a person must act": a failure here is never retried by itself (the reason is shown, and
the instance deleted, or the delete asked again), so it maps to `*Error`. Ed-Fi has no rename:
an instance being renamed, or whose rename failed, still has its database, so it is `Created`.
"""

from __future__ import annotations

from enum import StrEnum

from services.rules.states import InstanceStatus, JobStatus


class EdFiStatus(StrEnum):
    PENDING_CREATE = "PendingCreate"
    CREATE_IN_PROGRESS = "CreateInProgress"
    CREATED = "Created"
    CREATE_FAILED = "CreateFailed"
    CREATE_ERROR = "CreateError"
    PENDING_DELETE = "PendingDelete"
    DELETE_IN_PROGRESS = "DeleteInProgress"
    DELETED = "Deleted"
    DELETE_FAILED = "DeleteFailed"
    DELETE_ERROR = "DeleteError"


TO_EDFI: dict[InstanceStatus, EdFiStatus] = {
    InstanceStatus.PENDING: EdFiStatus.PENDING_CREATE,
    InstanceStatus.IN_PROGRESS: EdFiStatus.CREATE_IN_PROGRESS,
    InstanceStatus.COMPLETED: EdFiStatus.CREATED,
    InstanceStatus.ERROR: EdFiStatus.CREATE_ERROR,
    InstanceStatus.PENDING_RENAME: EdFiStatus.CREATED,
    InstanceStatus.RENAME_FAILED: EdFiStatus.CREATED,
    InstanceStatus.PENDING_DELETE: EdFiStatus.PENDING_DELETE,
    InstanceStatus.DELETED: EdFiStatus.DELETED,
    InstanceStatus.DELETE_FAILED: EdFiStatus.DELETE_ERROR,
}


def to_edfi(status: str, job_status: str | None = None) -> EdFiStatus:
    """Ed-Fi's name for an instance's status; a delete whose job is running is in progress."""
    mapped = TO_EDFI[InstanceStatus(status)]
    if mapped is EdFiStatus.PENDING_DELETE and job_status == JobStatus.RUNNING.value:
        return EdFiStatus.DELETE_IN_PROGRESS
    return mapped


def from_edfi(status: str) -> frozenset[InstanceStatus]:
    """The statuses here that Ed-Fi's status stands for (empty for one this system never
    gives: CreateFailed and DeleteFailed, which would promise a retry that does not happen)."""
    wanted = EdFiStatus(status)
    found = {ours for ours, theirs in TO_EDFI.items() if theirs is wanted}
    if wanted is EdFiStatus.DELETE_IN_PROGRESS:
        found.add(InstanceStatus.PENDING_DELETE)
    return frozenset(found)
