"""HTTP request and response bodies (camelCase JSON, like Ed-Fi Admin API 2)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic.alias_generators import to_camel

from services.rules.naming import Printable, name_problem


def _checked_name(value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise ValueError(problem)
    return value


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


# What Ed-Fi's dbo tables hold: contextkey, contextvalue and derivativetype are VARCHAR(50).
DetailText = Annotated[
    str, StringConstraints(min_length=1, max_length=50, pattern=r"^[^\x00-\x1f]+$")
]


class OdsInstanceContextIn(CamelModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    context_key: DetailText = Field(description="e.g. schoolYear")
    context_value: DetailText = Field(description="e.g. 2027")


class OdsInstanceDerivativeIn(CamelModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    derivative_type: Literal["ReadReplica", "Snapshot"] = Field(
        description="Ed-Fi's derivative types"
    )


class InstanceDetails(CamelModel):
    """What Ed-Fi keeps about an instance besides its database: written to
    dbo.odsinstances.instancetype, dbo.odsinstancecontexts and dbo.odsinstancederivatives."""

    instance_type: Printable | None = Field(
        default=None, min_length=1, max_length=100, description="e.g. DistrictSpecific"
    )
    ods_instance_contexts: list[OdsInstanceContextIn] = Field(
        default_factory=list, max_length=20, description="One value per key"
    )
    ods_instance_derivatives: list[OdsInstanceDerivativeIn] = Field(
        default_factory=list, max_length=2, description="One of each type"
    )

    @field_validator("ods_instance_contexts")
    @classmethod
    def _one_value_per_key(cls, value: list[OdsInstanceContextIn]) -> list[OdsInstanceContextIn]:
        keys = [c.context_key.lower() for c in value]
        if len(set(keys)) != len(keys):
            raise ValueError("each contextKey may appear once")
        return value

    @field_validator("ods_instance_derivatives")
    @classmethod
    def _one_of_each_type(
        cls, value: list[OdsInstanceDerivativeIn]
    ) -> list[OdsInstanceDerivativeIn]:
        types = [d.derivative_type for d in value]
        if len(set(types)) != len(types):
            raise ValueError("each derivativeType may appear once")
        return value

    def stored(self) -> dict[str, Any]:
        """The edfi_im.dbinstances columns."""
        return {
            "instancetype": self.instance_type,
            "contexts": [c.model_dump(by_alias=True) for c in self.ods_instance_contexts],
            "derivatives": [d.model_dump(by_alias=True) for d in self.ods_instance_derivatives],
        }


class CreateDbInstance(InstanceDetails):
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
    instance_type: str | None = None
    ods_instance_contexts: list[dict[str, str]] = Field(default_factory=list)
    ods_instance_derivatives: list[dict[str, str]] = Field(default_factory=list)


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
