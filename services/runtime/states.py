"""Instance and job statuses and the rules for moving between them (pure, unit-tested)."""

from __future__ import annotations

from enum import StrEnum


class InstanceStatus(StrEnum):
    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    ERROR = "Error"
    PENDING_RENAME = "Pending_Rename"
    RENAME_FAILED = "Rename_Failed"
    PENDING_DELETE = "Pending_Delete"
    DELETED = "Deleted"
    DELETE_FAILED = "Delete_Failed"


class JobStatus(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"


class JobType(StrEnum):
    CREATE_INSTANCE = "createInstance"
    RENAME_INSTANCE = "renameInstance"
    DELETE_INSTANCE = "deleteInstance"


TERMINAL_JOB_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})

# An instance in one of these has an operation in flight: new requests on it are refused.
IN_FLIGHT = frozenset(
    {
        InstanceStatus.PENDING,
        InstanceStatus.IN_PROGRESS,
        InstanceStatus.PENDING_RENAME,
        InstanceStatus.PENDING_DELETE,
    }
)


def on_started(status: InstanceStatus) -> InstanceStatus:
    """A provisioner began work: a create shows InProgress; other operations keep their status."""
    return InstanceStatus.IN_PROGRESS if status == InstanceStatus.PENDING else status


def on_create_outcome(succeeded: bool) -> tuple[InstanceStatus, JobStatus]:
    if succeeded:
        return InstanceStatus.COMPLETED, JobStatus.COMPLETED
    return InstanceStatus.ERROR, JobStatus.FAILED


def is_terminal(job_status: str) -> bool:
    return job_status in TERMINAL_JOB_STATUSES
