"""HTTP response bodies (camelCase JSON, like Ed-Fi Admin API 2); the request bodies are the
rules' own models (services/rules/parameters.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from services.rules.parameters import (
    CamelModel,
    CreateDbInstance,
    DeleteInstanceParameters,
    InstanceDetails,
    OdsInstanceContextIn,
    OdsInstanceDerivativeIn,
    PruneParameters,
    ReconcileParameters,
    RenameDbInstance,
    RenameInstanceParameters,
    checked_name,
)

__all__ = [
    "CamelModel",
    "CopyDbInstance",
    "CreateDbInstance",
    "DatabaseFacts",
    "DbInstance",
    "DeleteInstanceParameters",
    "InstanceDetails",
    "Job",
    "OdsInstanceContextIn",
    "OdsInstanceDerivativeIn",
    "PruneParameters",
    "ReconcileParameters",
    "RenameDbInstance",
    "RenameInstanceParameters",
]


class DatabaseFacts(CamelModel):
    """What the ODS server said of the instance's database when it was asked for (one instance
    only; never in lists)."""

    read_at: datetime
    exists: bool | None = Field(default=None, description="The database is on the server")
    online: bool | None = Field(default=None, description="It exists and accepts connections")
    size_bytes: int | None = None
    sessions: int | None = Field(default=None, description="Sessions connected to it")
    unavailable: str | None = Field(
        default=None,
        description="Why nothing could be read (the server did not answer in time, …)",
    )


class DbInstance(CamelModel):
    id: int
    name: str
    status: str
    database_template: str
    database_name: str | None
    job_id: uuid.UUID | None
    ods_instance_id: int | None
    ods_instance_name: str | None
    error: str | None
    pending_name: str | None = Field(
        default=None, description="The name a rename in flight will give the instance"
    )
    imported: bool = Field(
        default=False, description="Found in dbo.odsinstances at start-up, made by another tool"
    )
    created_date: datetime
    last_modified_date: datetime | None
    last_refreshed: datetime
    instance_type: str | None = None
    ods_instance_contexts: list[dict[str, str]] = Field(default_factory=list)
    ods_instance_derivatives: list[dict[str, str]] = Field(default_factory=list)
    database: DatabaseFacts | None = Field(
        default=None,
        description="Its database's size, state and sessions, read from the ODS server at "
        "request time (`GET /v2/dbInstances/{id}` only)",
    )


class CopyDbInstance(InstanceDetails):
    """A new instance whose database is a copy of an existing instance's (a school-year
    rollover): the source is never changed."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Grand Bend 2028", "endSourceSessions": False}]},
    )

    name: str = Field(description="The new instance's name (the rules of a create)")
    end_source_sessions: bool = Field(
        default=False,
        description="PostgreSQL copies a database only while nobody is connected to it: true "
        "allows the sessions on the source's database to be ended for the copy (otherwise a "
        "copy of a database with sessions is refused with 409, naming how many)",
    )

    _valid_name = field_validator("name")(checked_name)


class Job(CamelModel):
    id: uuid.UUID
    type: str
    instance_id: int | None
    status: str
    progress_message: str | None
    progress_percent: int | None
    attempts: int
    recoveries: int = Field(
        default=0, description="Times the job was re-driven after its worker stopped responding"
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    error: str | None
    worker: str | None
    correlation_id: str | None
    schedule_id: uuid.UUID | None = Field(default=None, description="The schedule that fired it")
    parameters: dict[str, Any] = Field(default_factory=dict, description="What it was asked to do")
    result: dict[str, Any] | None = Field(
        default=None, description="What a maintenance job found and did"
    )
