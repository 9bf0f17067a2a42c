"""Schedule request and response bodies (camelCase JSON)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from services.gateway.schemas import CamelModel
from services.rules.naming import Printable
from services.rules.states import JobType
from services.rules.triggers import MisfirePolicy, ScheduleState, Trigger


class ScheduleJob(CamelModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    type: JobType
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "createInstance: name, databaseTemplate; renameInstance: id, name; deleteInstance: "
            "id; reconcile: repair (default true); prune: olderThanDays"
        ),
    )


class CreateSchedule(CamelModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Nightly reconcile",
                    "job": {"type": "reconcile", "parameters": {}},
                    "trigger": {"type": "cron", "cron": "0 0 2 * * ?", "timeZone": "UTC"},
                    "misfirePolicy": "fireOnceNow",
                    "allowConcurrent": False,
                }
            ]
        },
    )

    name: Printable = Field(min_length=1, max_length=200)
    job: ScheduleJob
    trigger: Trigger
    misfire_policy: MisfirePolicy = MisfirePolicy.FIRE_ONCE_NOW
    allow_concurrent: bool = Field(
        default=False,
        description="false: a fire while the previous run is unfinished is skipped (recorded)",
    )

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class Schedule(CamelModel):
    id: uuid.UUID
    name: str
    job: ScheduleJob
    trigger: dict[str, Any]
    misfire_policy: MisfirePolicy
    allow_concurrent: bool
    state: ScheduleState
    next_fire_time: datetime | None
    previous_fire_time: datetime | None
    fire_count: int = Field(description="Jobs fired so far")
    last_job_id: uuid.UUID | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    paused_at: datetime | None


class ScheduleRun(CamelModel):
    scheduled_fire_time: datetime = Field(description="The occurrence")
    actual_fire_time: datetime = Field(description="When the scheduler handled it")
    job_id: uuid.UUID | None
    outcome: str = Field(
        description=(
            "The fired job's status (Pending, Running, Completed, Failed, Cancelled); Failed "
            "when the job was refused; Skipped (previous run unfinished); Missed (misfire)"
        )
    )
    detail: str | None
