"""HTTP response bodies (camelCase JSON, like Ed-Fi Admin API 2); the request bodies are the
rules' own models (services/rules/parameters.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

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
)

__all__ = [
    "CamelModel",
    "CreateDbInstance",
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
