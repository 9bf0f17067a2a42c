"""Instance and job statuses and the rules for moving between them (pure, unit-tested).

Pending ──▶ InProgress ──▶ Completed ──rename──▶ Pending_Rename ──▶ Completed
   │            │             │  ▲                     └──▶ Rename_Failed ──rename/delete──▶ …
   └────────────┴──▶ Error    │  └─────────────────────────────────────────┘
                       │      └──delete──▶ Pending_Delete ──▶ Deleted
                       └──delete──▶ …                    └──▶ Delete_Failed ──delete──▶ …
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from contracts.messages import Operation
from services.rules.errors import DisabledError


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
    CANCELLED = "Cancelled"


class JobType(StrEnum):
    CREATE_INSTANCE = "createInstance"
    RENAME_INSTANCE = "renameInstance"
    DELETE_INSTANCE = "deleteInstance"
    RECONCILE = "reconcile"
    PRUNE = "prune"


JOB_TYPE = {
    Operation.CREATE: JobType.CREATE_INSTANCE,
    Operation.RENAME: JobType.RENAME_INSTANCE,
    Operation.DELETE: JobType.DELETE_INSTANCE,
}

TERMINAL_JOB_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

# An instance in one of these has an operation in flight: new requests on it are refused.
IN_FLIGHT = {
    InstanceStatus.PENDING: Operation.CREATE,
    InstanceStatus.IN_PROGRESS: Operation.CREATE,
    InstanceStatus.PENDING_RENAME: Operation.RENAME,
    InstanceStatus.PENDING_DELETE: Operation.DELETE,
}

# Where each operation may start from.
ALLOWED_FROM = {
    Operation.RENAME: frozenset({InstanceStatus.COMPLETED, InstanceStatus.RENAME_FAILED}),
    Operation.DELETE: frozenset(
        {
            InstanceStatus.COMPLETED,
            InstanceStatus.ERROR,
            InstanceStatus.RENAME_FAILED,
            InstanceStatus.DELETE_FAILED,
        }
    ),
}

PENDING = {
    Operation.CREATE: InstanceStatus.PENDING,
    Operation.RENAME: InstanceStatus.PENDING_RENAME,
    Operation.DELETE: InstanceStatus.PENDING_DELETE,
}

OUTCOME = {
    (Operation.CREATE, True): InstanceStatus.COMPLETED,
    (Operation.CREATE, False): InstanceStatus.ERROR,
    (Operation.RENAME, True): InstanceStatus.COMPLETED,
    (Operation.RENAME, False): InstanceStatus.RENAME_FAILED,
    (Operation.DELETE, True): InstanceStatus.DELETED,
    (Operation.DELETE, False): InstanceStatus.DELETE_FAILED,
}


@dataclass(frozen=True)
class Refusal:
    """Why a request on an instance is refused, as an HTTP status and a message."""

    http_status: int
    reason: str
    in_flight: Operation | None = None


def check_request(operation: Operation, status: InstanceStatus) -> Refusal | None:
    """None when `operation` may start on an instance in `status`."""
    if status == InstanceStatus.DELETED:
        return Refusal(404, "the instance was deleted")
    if status in IN_FLIGHT:
        running = IN_FLIGHT[status]
        return Refusal(409, f"a {running.value} operation is in flight", in_flight=running)
    if status in ALLOWED_FROM[operation]:
        return None
    if status == InstanceStatus.ERROR:
        return Refusal(409, "the instance has no database (its create failed); delete it")
    if status == InstanceStatus.DELETE_FAILED:
        return Refusal(409, "the last delete failed; delete it again")
    return Refusal(409, f"cannot {operation.value} an instance that is {status.value}")


def on_started(status: InstanceStatus) -> InstanceStatus:
    """A provisioner began work: a create shows InProgress; other operations keep their status."""
    return InstanceStatus.IN_PROGRESS if status == InstanceStatus.PENDING else status


def outcome(operation: Operation, succeeded: bool) -> tuple[InstanceStatus, JobStatus]:
    job = JobStatus.COMPLETED if succeeded else JobStatus.FAILED
    return OUTCOME[(operation, succeeded)], job


def is_terminal(job_status: str) -> bool:
    return job_status in TERMINAL_JOB_STATUSES


class Claimed(StrEnum):
    """What a worker claiming its job before working on it found."""

    CLAIMED = "claimed"  # go on (also: a job this admin database does not know, sent by hand)
    RESUMED = "resumed"  # claimed by an earlier attempt (a redelivery, a re-drive): go on
    CANCELLED = "cancelled"  # cancelled before it started: skipped
    ENDED = "ended"  # already ended (given up, failed, done) or no longer the instance's: skipped


@dataclass(frozen=True)
class Switch:
    """The kill switch Ed-Fi hosts asked for: instance management off altogether, or only its
    destructive operations (delete, rename)."""

    management: bool = True
    destructive: bool = True

    def check(self, operation: Operation) -> None:
        """A DisabledError naming the setting when `operation` is turned off."""
        if not self.management:
            raise DisabledError(
                f"instance management is turned off here: no {operation.value} is accepted "
                "(EDFI_IM_INSTANCE_MANAGEMENT_ENABLED=false)",
                setting="EDFI_IM_INSTANCE_MANAGEMENT_ENABLED",
            )
        if not self.destructive and operation in (Operation.RENAME, Operation.DELETE):
            raise DisabledError(
                f"destructive operations are turned off here: no {operation.value} is accepted "
                "(EDFI_IM_DESTRUCTIVE_OPERATIONS_ENABLED=false)",
                setting="EDFI_IM_DESTRUCTIVE_OPERATIONS_ENABLED",
            )
