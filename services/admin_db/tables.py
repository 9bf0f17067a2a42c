"""The admin database tables as SQLModel models (SQLAlchemy tables underneath: the Core queries
use `<name> = table_of(Model)`): Ed-Fi's own `dbo` tables, as Ed-Fi 7.x's EdFi_Admin has them (the
columns this system uses), and this system's, which the migrations create in its own schema.
tests/integration/test_migrations.py checks them against the migrated database: types,
nullability and keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlmodel import Field, SQLModel

from services.admin_db.dialect import Json

# This system's own schema (never Ed-Fi's `dbo`, nor `adminapi`, which Ed-Fi's Admin API owns).
SCHEMA = "edfi_im"

metadata: MetaData = SQLModel.metadata


def column(type_: Any, *constraints: Any, **options: Any) -> Any:
    """A field whose column is exactly this SQL type (length, time zone, JSON)."""
    return Field(default=None, sa_column=Column(type_, *constraints, **options))


def table_of(model: type[SQLModel]) -> Table:
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


# --- Ed-Fi's own EdFi_Admin tables (those this system reads, writes or must clear) ---


class OdsInstancesRow(SQLModel, table=True):
    __tablename__ = "odsinstances"
    __table_args__ = {"schema": "dbo"}

    odsinstanceid: int = column(Integer, primary_key=True)
    name: str = column(String(100), nullable=False)
    instancetype: str | None = column(String(100))
    connectionstring: str | None = column(String(1500))


ods_instances = table_of(OdsInstancesRow)


class OdsInstanceContextsRow(SQLModel, table=True):
    __tablename__ = "odsinstancecontexts"
    __table_args__ = {"schema": "dbo"}

    odsinstancecontextid: int = column(Integer, primary_key=True)
    odsinstance_odsinstanceid: int = column(Integer, nullable=False)
    contextkey: str = column(String(50), nullable=False)
    contextvalue: str = column(String(50), nullable=False)


ods_instance_contexts = table_of(OdsInstanceContextsRow)


class OdsInstanceDerivativesRow(SQLModel, table=True):
    __tablename__ = "odsinstancederivatives"
    __table_args__ = {"schema": "dbo"}

    odsinstancederivativeid: int = column(Integer, primary_key=True)
    odsinstance_odsinstanceid: int = column(Integer, nullable=False)
    derivativetype: str = column(String(50), nullable=False)
    connectionstring: str | None = column(String(1500))


ods_instance_derivatives = table_of(OdsInstanceDerivativesRow)


class ApiClientOdsInstancesRow(SQLModel, table=True):
    __tablename__ = "apiclientodsinstances"
    __table_args__ = {"schema": "dbo"}

    apiclientodsinstanceid: int = column(Integer, primary_key=True)
    apiclient_apiclientid: int = column(Integer, nullable=False)
    odsinstance_odsinstanceid: int = column(Integer, nullable=False)


api_client_ods_instances = table_of(ApiClientOdsInstancesRow)


class ApiClientsRow(SQLModel, table=True):
    __tablename__ = "apiclients"
    __table_args__ = {"schema": "dbo"}

    apiclientid: int = column(Integer, primary_key=True)
    key: str = column(String(50), nullable=False)
    name: str = column(String(50), nullable=False)


api_clients = table_of(ApiClientsRow)


class ClientAccessTokensRow(SQLModel, table=True):
    __tablename__ = "clientaccesstokens"
    __table_args__ = {"schema": "dbo"}

    id: uuid.UUID = column(Uuid, primary_key=True)
    apiclient_apiclientid: int | None = column(Integer)


client_access_tokens = table_of(ClientAccessTokensRow)


class ApiClientOwnershipTokensRow(SQLModel, table=True):
    __tablename__ = "apiclientownershiptokens"
    __table_args__ = {"schema": "dbo"}

    apiclientownershiptokenid: int = column(Integer, primary_key=True)
    apiclient_apiclientid: int = column(Integer, nullable=False)


api_client_ownership_tokens = table_of(ApiClientOwnershipTokensRow)


class ApiClientEdOrgsRow(SQLModel, table=True):
    __tablename__ = "apiclientapplicationeducationorganizations"
    __table_args__ = {"schema": "dbo"}

    apiclient_apiclientid: int = column(Integer, primary_key=True)
    applicationedorg_applicationedorgid: int = column(Integer, primary_key=True)


api_client_application_education_organizations = table_of(ApiClientEdOrgsRow)


# --- this system's own schema ---


class DbInstancesRow(SQLModel, table=True):
    __tablename__ = "dbinstances"
    __table_args__ = {"schema": SCHEMA}

    id: int = column(Integer, primary_key=True)
    name: str = column(String(100), nullable=False)
    odsinstanceid: int | None = column(Integer)
    odsinstancename: str | None = column(String(100))
    status: str = column(String(75), nullable=False)
    databasetemplate: str = column(String(100), nullable=False)
    databasename: str | None = column(String(255))
    lastrefreshed: datetime = column(DateTime(timezone=True), nullable=False)
    lastmodifieddate: datetime | None = column(DateTime(timezone=True))
    currentjobid: uuid.UUID | None = column(Uuid)
    error: str | None = column(Text)
    createdat: datetime = column(DateTime(timezone=True), nullable=False)
    pendingname: str | None = column(String(100))
    pendingdatabasename: str | None = column(String(255))
    imported: bool = column(Boolean, nullable=False)
    instancetype: str | None = column(String(100))
    contexts: Any = column(Json, nullable=False, server_default="[]")
    derivatives: Any = column(Json, nullable=False, server_default="[]")


db_instances = table_of(DbInstancesRow)


class JobsRow(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = column(Uuid, primary_key=True)
    type: str = column(String(50), nullable=False)
    instance_id: int | None = column(Integer, ForeignKey(f"{SCHEMA}.dbinstances.id"))
    status: str = column(String(20), nullable=False)
    progress_message: str | None = column(Text)
    progress_percent: int | None = column(Integer)
    attempts: int = column(Integer, nullable=False)
    created_at: datetime = column(DateTime(timezone=True), nullable=False)
    started_at: datetime | None = column(DateTime(timezone=True))
    finished_at: datetime | None = column(DateTime(timezone=True))
    heartbeat_at: datetime | None = column(DateTime(timezone=True))
    error: str | None = column(Text)
    worker: str | None = column(String(200))
    correlation_id: str | None = column(String(100))
    data: Any = column(Json, nullable=False)
    command: Any = column(Json)
    recoveries: int = column(Integer, nullable=False)
    schedule_id: uuid.UUID | None = column(Uuid)
    result: Any = column(Json)
    claimed_at: datetime | None = column(DateTime(timezone=True))
    server_done_at: datetime | None = column(DateTime(timezone=True))


jobs = table_of(JobsRow)


class SchedulesRow(SQLModel, table=True):
    __tablename__ = "schedules"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = column(Uuid, primary_key=True)
    name: str = column(String(200), nullable=False)
    job_type: str = column(String(50), nullable=False)
    parameters: Any = column(Json, nullable=False)
    trigger: Any = column(Json, nullable=False)
    misfire_policy: str = column(String(20), nullable=False)
    allow_concurrent: bool = column(Boolean, nullable=False)
    state: str = column(String(20), nullable=False)
    next_fire_time: datetime | None = column(DateTime(timezone=True))
    previous_fire_time: datetime | None = column(DateTime(timezone=True))
    fire_count: int = column(Integer, nullable=False)
    last_job_id: uuid.UUID | None = column(Uuid)
    error: str | None = column(Text)
    created_at: datetime = column(DateTime(timezone=True), nullable=False)
    updated_at: datetime = column(DateTime(timezone=True), nullable=False)
    paused_at: datetime | None = column(DateTime(timezone=True))


schedules = table_of(SchedulesRow)


class ScheduleRunsRow(SQLModel, table=True):
    __tablename__ = "schedule_runs"
    __table_args__ = (
        UniqueConstraint("schedule_id", "scheduled_fire_time", name="schedule_runs_occurrence_uq"),
        {"schema": SCHEMA},
    )

    id: int = column(BigInteger, primary_key=True)
    schedule_id: uuid.UUID = column(
        Uuid, ForeignKey(f"{SCHEMA}.schedules.id", ondelete="CASCADE"), nullable=False
    )
    scheduled_fire_time: datetime = column(DateTime(timezone=True), nullable=False)
    actual_fire_time: datetime = column(DateTime(timezone=True), nullable=False)
    job_id: uuid.UUID | None = column(Uuid)
    outcome: str = column(String(20), nullable=False)
    detail: str | None = column(Text)


schedule_runs = table_of(ScheduleRunsRow)


class OutboxRow(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = {"schema": SCHEMA}

    id: int = column(BigInteger, primary_key=True)
    message_id: uuid.UUID = column(Uuid, nullable=False, unique=True)
    exchange: str = column(String(200), nullable=False)
    routing_key: str = column(String(200), nullable=False)
    message_type: str = column(String(200), nullable=False)
    body: Any = column(Json, nullable=False)
    correlation_id: str | None = column(String(100))
    created_at: datetime = column(DateTime(timezone=True), nullable=False)
    sent_at: datetime | None = column(DateTime(timezone=True))
    attempts: int = column(Integer, nullable=False)
    last_error: str | None = column(Text)
    parked_at: datetime | None = column(DateTime(timezone=True))


outbox = table_of(OutboxRow)


class InboxRow(SQLModel, table=True):
    __tablename__ = "inbox"
    __table_args__ = {"schema": SCHEMA}

    consumer: str = column(String(100), primary_key=True)
    message_id: str = column(String(200), primary_key=True)
    message_type: str | None = column(String(200))
    processed_at: datetime = column(DateTime(timezone=True), nullable=False)


inbox = table_of(InboxRow)


class ClientsRow(SQLModel, table=True):
    __tablename__ = "clients"
    __table_args__ = {"schema": SCHEMA}

    client_id: str = column(String(100), primary_key=True)
    secret_hash: str = column(Text, nullable=False)
    display_name: str = column(String(200), nullable=False)
    tenants: Any = column(Json)
    created_at: datetime = column(DateTime(timezone=True), nullable=False)
    scopes: Any = column(Json)


clients = table_of(ClientsRow)


class DeploymentRow(SQLModel, table=True):
    """One row: this deployment's identity, in the mark of every database it creates."""

    __tablename__ = "deployment"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = column(Uuid, primary_key=True)
    created_at: datetime = column(DateTime(timezone=True), nullable=False)
    singleton: bool = column(Boolean, nullable=False, unique=True)


deployment = table_of(DeploymentRow)


class ChangesRow(SQLModel, table=True):
    """Written by the migrations' triggers only (0012_changes.sql); read by admin_db.changes."""

    __tablename__ = "changes"
    __table_args__ = {"schema": SCHEMA}

    id: int = column(BigInteger, primary_key=True, autoincrement=False)
    kind: str = column(String(20), nullable=False)
    entity_id: str = column(String(64), nullable=False)
    txid: int = column(BigInteger, nullable=False)
    body: Any = column(Json, nullable=False)
    created_at: datetime = column(DateTime(timezone=True), nullable=False)


changes = table_of(ChangesRow)

# Tables only a PostgreSQL admin database has: the change feed is written by PL/pgSQL triggers
# and announced by NOTIFY (migration 0012); on SQL Server the event streams answer 501.
POSTGRES_ONLY = frozenset({changes.name})
