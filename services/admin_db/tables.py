"""The admin database tables: Ed-Fi's own `dbo` tables (as Ed-Fi 7.x's EdFi_Admin has them; the
columns this system uses), and this system's, which infra/migrations creates in its own schema."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

# This system's own schema (never Ed-Fi's `dbo`, nor `adminapi`, which Ed-Fi's Admin API owns).
SCHEMA = "edfi_im"

# --- Ed-Fi's own EdFi_Admin tables (those this system reads, writes or must clear) ---
ods_instances = Table(
    "odsinstances",
    metadata,
    Column("odsinstanceid", Integer, primary_key=True),
    Column("name", String(100), nullable=False),
    Column("instancetype", String(100)),
    Column("connectionstring", String(1500)),
    schema="dbo",
)
ods_instance_contexts = Table(
    "odsinstancecontexts",
    metadata,
    Column("odsinstancecontextid", Integer, primary_key=True),
    Column("odsinstance_odsinstanceid", Integer, nullable=False),
    Column("contextkey", String(50), nullable=False),
    Column("contextvalue", String(50), nullable=False),
    schema="dbo",
)
ods_instance_derivatives = Table(
    "odsinstancederivatives",
    metadata,
    Column("odsinstancederivativeid", Integer, primary_key=True),
    Column("odsinstance_odsinstanceid", Integer, nullable=False),
    Column("derivativetype", String(50), nullable=False),
    Column("connectionstring", String(1500)),
    schema="dbo",
)
api_client_ods_instances = Table(
    "apiclientodsinstances",
    metadata,
    Column("apiclientodsinstanceid", Integer, primary_key=True),
    Column("apiclient_apiclientid", Integer, nullable=False),
    Column("odsinstance_odsinstanceid", Integer, nullable=False),
    schema="dbo",
)
api_clients = Table(
    "apiclients",
    metadata,
    Column("apiclientid", Integer, primary_key=True),
    Column("key", String(50), nullable=False),
    Column("name", String(50), nullable=False),
    schema="dbo",
)
# What references an API client. Ed-Fi's foreign keys from clientaccesstokens (and from
# apiclientodsinstances) are NO ACTION: these rows go before the client does.
client_access_tokens = Table(
    "clientaccesstokens",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("apiclient_apiclientid", Integer),
    schema="dbo",
)
api_client_ownership_tokens = Table(
    "apiclientownershiptokens",
    metadata,
    Column("apiclientownershiptokenid", Integer, primary_key=True),
    Column("apiclient_apiclientid", Integer, nullable=False),
    schema="dbo",
)
api_client_application_education_organizations = Table(
    "apiclientapplicationeducationorganizations",
    metadata,
    Column("apiclient_apiclientid", Integer, primary_key=True),
    Column("applicationedorg_applicationedorgid", Integer, primary_key=True),
    schema="dbo",
)

# --- this system's own schema ---
db_instances = Table(
    "dbinstances",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False),
    Column("odsinstanceid", Integer),
    Column("odsinstancename", String(100)),
    Column("status", String(75), nullable=False),
    Column("databasetemplate", String(100), nullable=False),
    Column("databasename", String(255)),
    Column("lastrefreshed", DateTime(timezone=True), nullable=False),
    Column("lastmodifieddate", DateTime(timezone=True)),
    Column("currentjobid", Uuid),
    Column("error", Text),
    Column("createdat", DateTime(timezone=True), nullable=False),
    Column("pendingname", String(100)),
    Column("pendingdatabasename", String(255)),
    Column("imported", Boolean, nullable=False),
    Column("instancetype", String(100)),
    Column("contexts", JSONB, nullable=False, server_default="[]"),
    Column("derivatives", JSONB, nullable=False, server_default="[]"),
    schema=SCHEMA,
)
jobs = Table(
    "jobs",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("type", String(50), nullable=False),
    Column("instance_id", Integer),
    Column("status", String(20), nullable=False),
    Column("progress_message", Text),
    Column("progress_percent", Integer),
    Column("attempts", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("error", Text),
    Column("worker", String(200)),
    Column("correlation_id", String(100)),
    Column("data", JSONB, nullable=False),
    Column("command", JSONB),
    Column("recoveries", Integer, nullable=False),
    Column("schedule_id", Uuid),
    Column("result", JSONB),
    Column("claimed_at", DateTime(timezone=True)),
    Column("server_done_at", DateTime(timezone=True)),
    schema=SCHEMA,
)
schedules = Table(
    "schedules",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("job_type", String(50), nullable=False),
    Column("parameters", JSONB, nullable=False),
    Column("trigger", JSONB, nullable=False),
    Column("misfire_policy", String(20), nullable=False),
    Column("allow_concurrent", Boolean, nullable=False),
    Column("state", String(20), nullable=False),
    Column("next_fire_time", DateTime(timezone=True)),
    Column("previous_fire_time", DateTime(timezone=True)),
    Column("fire_count", Integer, nullable=False),
    Column("last_job_id", Uuid),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("paused_at", DateTime(timezone=True)),
    schema=SCHEMA,
)
schedule_runs = Table(
    "schedule_runs",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("schedule_id", Uuid, nullable=False),
    Column("scheduled_fire_time", DateTime(timezone=True), nullable=False),
    Column("actual_fire_time", DateTime(timezone=True), nullable=False),
    Column("job_id", Uuid),
    Column("outcome", String(20), nullable=False),
    Column("detail", Text),
    schema=SCHEMA,
)
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("message_id", Uuid, nullable=False, unique=True),
    Column("exchange", String(200), nullable=False),
    Column("routing_key", String(200), nullable=False),
    Column("message_type", String(200), nullable=False),
    Column("body", JSONB, nullable=False),
    Column("correlation_id", String(100)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("parked_at", DateTime(timezone=True)),
    schema=SCHEMA,
)
inbox = Table(
    "inbox",
    metadata,
    Column("consumer", String(100), primary_key=True),
    Column("message_id", String(200), primary_key=True),
    Column("message_type", String(200)),
    Column("processed_at", DateTime(timezone=True), nullable=False),
    schema=SCHEMA,
)
clients = Table(
    "clients",
    metadata,
    Column("client_id", String(100), primary_key=True),
    Column("secret_hash", Text, nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("tenants", JSONB),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("scopes", JSONB),
    schema=SCHEMA,
)
