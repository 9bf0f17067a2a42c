"""HTTP request and response bodies (camelCase JSON, like Ed-Fi Admin API 2)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from services.runtime.naming import name_problem


def _checked_name(value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise ValueError(problem)
    return value


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class CreateDbInstance(CamelModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Grand Bend", "databaseTemplate": "Minimal"}]},
    )

    name: str = Field(description="1-46 characters: ASCII letters, digits, space, underscore")
    database_template: str = Field(description="A configured template, e.g. Minimal or Sample")

    _valid_name = field_validator("name")(_checked_name)


class RenameDbInstance(CamelModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Grand Bend 2027"}]},
    )

    name: str = Field(description="The new name: same rule as for a create")

    _valid_name = field_validator("name")(_checked_name)


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


class _Parameters(CamelModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class RenameInstanceParameters(_Parameters):
    id: int = Field(ge=1, le=2_147_483_647, description="The instance to rename")
    name: str = Field(description="The new name: same rule as for a create")

    _valid_name = field_validator("name")(_checked_name)


class DeleteInstanceParameters(_Parameters):
    id: int = Field(ge=1, le=2_147_483_647, description="The instance to delete")


class ReconcileParameters(_Parameters):
    repair: bool = Field(
        default=True, description="Also repair what is safe to repair (imports unmanaged rows)"
    )


class PruneParameters(_Parameters):
    older_than_days: float | None = Field(
        default=None, gt=0, le=36_500, description="Default: the EDFI_IM_RETENTION_DAYS setting"
    )
