"""Commands and events. No connection string (or any secret) ever travels in a message.

Each message names its contract and version in the AMQP `type` header, e.g.
``edfi.instances.InstanceRequested.v1``. A new incompatible shape gets a new version.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

TYPE_PREFIX = "edfi.instances"


def _now() -> datetime:
    return datetime.now(UTC)


class Operation(StrEnum):
    CREATE = "create"
    RENAME = "rename"
    DELETE = "delete"


class Envelope(BaseModel):
    """What every message carries: the job it is about, its tenant, when and who sent it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    VERSION: ClassVar[int] = 1

    job_id: uuid.UUID
    tenant: str | None = None
    occurred_at: datetime = Field(default_factory=_now)
    worker: str | None = Field(default=None, description="The process that sent it")


class Message(Envelope):
    """A command or event about one instance."""

    instance_id: int = Field(ge=1)


class MaintenanceTask(StrEnum):
    RECONCILE = "reconcile"
    PRUNE = "prune"


class MaintenanceRequested(Envelope):
    """Command: run one maintenance job (sent to the scheduler's maintenance queue)."""

    task: MaintenanceTask
    parameters: dict[str, Any] = Field(default_factory=dict)


def message_type(model: type[Envelope] | Envelope) -> str:
    cls = model if isinstance(model, type) else type(model)
    return f"{TYPE_PREFIX}.{cls.__name__}.v{cls.VERSION}"


class InstanceRequested(Message):
    """Command: perform one operation on one instance's database (sent to its shard)."""

    operation: Operation
    database_name: str = Field(min_length=1, max_length=128)
    database_template: str | None = Field(
        default=None, description="The template database to clone (create only)."
    )
    new_name: str | None = Field(default=None, description="The new instance name (rename only).")
    new_database_name: str | None = Field(
        default=None, description="The database's new name (rename only)."
    )
    expect_database: bool = Field(
        default=True,
        description=(
            "Delete only: False when the instance never got a database (its create failed), so "
            "a database of that name that is not the instance's is left alone and not an error."
        ),
    )
    source_instance_id: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Copy only (a create whose template is another instance's database): that "
            "instance, whose lock the copy holds so that it is not renamed or deleted meanwhile."
        ),
    )
    end_source_sessions: bool = Field(
        default=False,
        description=(
            "Copy only: the request allowed the sessions on the source database to be ended "
            "(PostgreSQL copies a database only while nobody is connected to it)."
        ),
    )

    # The copy's fields are left out of a command that is not a copy, so that a provisioner of
    # the previous release (whose commands forbid unknown fields) still reads every other one.
    COPY_FIELDS: ClassVar[dict[str, object]] = {
        "source_instance_id": None,
        "end_source_sessions": False,
    }

    @model_serializer(mode="wrap")
    def _without_unused_copy_fields(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for key, unused in self.COPY_FIELDS.items():
                if key in data and data[key] == unused:
                    del data[key]
        return data


class InstanceOperationStarted(Message):
    """Event: a provisioner began an attempt at the job. Sent once the attempt has lasted the
    provisioner's progress delay: an attempt that ends sooner sends its outcome alone."""

    operation: Operation
    attempt: int = Field(ge=1)


class InstanceOperationProgress(Message):
    """Event: progress of a running job; also serves as its heartbeat."""

    operation: Operation
    message: str
    percent: int = Field(ge=0, le=100)


class InstanceOperationRetrying(Message):
    """Event: a try failed with a transient error; the provisioner will try again."""

    operation: Operation
    try_number: int = Field(ge=1, description="The try that failed")
    max_tries: int = Field(ge=1)
    error: str
    retry_in_seconds: float = Field(ge=0)


class OperationFailed(Message):
    """Base of the failure outcomes: the operation failed and will not be retried."""

    database_name: str
    reason: str


class InstanceCreated(Message):
    """Event: the instance's database exists and belongs to this instance."""

    database_name: str


class InstanceCreateFailed(OperationFailed):
    """Event: the create failed and will not be retried."""


class InstanceRenamed(Message):
    """Event: the database now has its new name."""

    old_database_name: str
    database_name: str
    new_name: str


class InstanceRenameFailed(OperationFailed):
    """Event: the rename failed; the database keeps its old name."""


class InstanceDeleted(Message):
    """Event: the instance's database is gone (dropped now, or already absent)."""

    database_name: str
    dropped: bool


class InstanceDeleteFailed(OperationFailed):
    """Event: the database could not be dropped; it is left as it was."""


OUTCOMES: dict[type[Message], tuple[Operation, bool]] = {
    InstanceCreated: (Operation.CREATE, True),
    InstanceCreateFailed: (Operation.CREATE, False),
    InstanceRenamed: (Operation.RENAME, True),
    InstanceRenameFailed: (Operation.RENAME, False),
    InstanceDeleted: (Operation.DELETE, True),
    InstanceDeleteFailed: (Operation.DELETE, False),
}

InstanceEvent = (
    InstanceOperationStarted
    | InstanceOperationProgress
    | InstanceOperationRetrying
    | InstanceCreated
    | InstanceCreateFailed
    | InstanceRenamed
    | InstanceRenameFailed
    | InstanceDeleted
    | InstanceDeleteFailed
)

_EVENTS: tuple[type[Message], ...] = (
    InstanceOperationStarted,
    InstanceOperationProgress,
    InstanceOperationRetrying,
    *OUTCOMES,
)
EVENT_TYPES: dict[str, type[Message]] = {message_type(cls): cls for cls in _EVENTS}

ALL_MESSAGES: tuple[type[Envelope], ...] = (
    InstanceRequested,
    *EVENT_TYPES.values(),
    MaintenanceRequested,
)


class UnknownMessageTypeError(ValueError):
    """The message's type header names no contract this service knows."""


def parse_command(type_header: str | None, body: bytes | str) -> InstanceRequested:
    """The command; a type header naming another contract or version is refused."""
    expected = message_type(InstanceRequested)
    if type_header and type_header != expected:
        raise UnknownMessageTypeError(f"expected {expected}, got {type_header!r}")
    return InstanceRequested.model_validate_json(body)


def parse_maintenance(type_header: str | None, body: bytes | str) -> MaintenanceRequested:
    expected = message_type(MaintenanceRequested)
    if type_header and type_header != expected:
        raise UnknownMessageTypeError(f"expected {expected}, got {type_header!r}")
    return MaintenanceRequested.model_validate_json(body)


def parse_event(type_header: str | None, body: bytes | str | dict[str, Any]) -> Message:
    cls = EVENT_TYPES.get(type_header or "")
    if cls is None:
        raise UnknownMessageTypeError(f"unknown message type {type_header!r}")
    if isinstance(body, dict):
        return cls.model_validate(body)
    return cls.model_validate_json(body)
