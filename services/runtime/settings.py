"""Settings for every service, read once from the environment (prefix ``EDFI_IM_``)."""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from services.rules.errors import ConfigurationError
from services.rules.protection import protected_databases
from services.rules.states import Switch

# A fixed, public key for development only: `just up` uses it when no key is set and says so.
DEVELOPMENT_ENCRYPTION_KEY = "ZGV2ZWxvcG1lbnQta2V5LW5vdC1mb3ItcHJvZCEhISE="

# Signs the gateway's access tokens in development when no key is set: made at start-up, never
# public (a published development key would let anyone who reaches the gateway mint tokens), so
# tokens do not outlive the process and each replica has its own.
EPHEMERAL_JWT_SIGNING_KEY = secrets.token_urlsafe(48)

DEFAULT_TEMPLATES = {
    "Minimal": "EdFi_Ods_Minimal_Template",
    "Sample": "EdFi_Ods_Populated_Template",
}

# Ed-Fi Admin API 2's rule for the `tenant` header and for tenant names.
TENANT_NAME = re.compile(r"^[A-Za-z0-9-]{1,50}$")


def decode_encryption_key(raw: str) -> bytes:
    """The 32 bytes of a base64 key, or a ValueError saying what is wrong with it."""
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("ODS_CONNECTION_STRING_ENCRYPTION_KEY is not valid base64") from None
    if len(key) != 32:
        raise ValueError(
            f"ODS_CONNECTION_STRING_ENCRYPTION_KEY must decode to 32 bytes, not {len(key)}"
        )
    return key


def check_name_pattern(value: str) -> str:
    """A database-name pattern: `{name}` and nothing else to fill in."""
    if "{name}" not in value:
        raise ValueError("database_name_pattern must contain {name}")
    try:
        value.format(name="x")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"database_name_pattern may use only the {{name}} placeholder: {exc!r}"
        ) from exc
    return value


def _url(value: str, schemes: tuple[str, ...], what: str, *, path: bool = False) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"must be a {what} URL ({' or '.join(s + '://' for s in schemes)}…)")
    if path and not parts.path.strip("/"):
        raise ValueError(f"must name a database, e.g. {schemes[0]}://host:5432/EdFi_Admin")
    return value


SQLSERVER_SCHEMES = ("mssql", "mssql+aioodbc", "mssql+pyodbc")


def _database(value: str) -> str:
    """A PostgreSQL URL naming its database, or a SQL Server one (`mssql://…`)."""
    if urlsplit(value).scheme in SQLSERVER_SCHEMES:
        return _url(value, SQLSERVER_SCHEMES, "SQL Server", path=True)
    return _url(value, ("postgresql", "postgres"), "PostgreSQL or SQL Server", path=True)


def _server(value: str) -> str:
    """The ODS server: PostgreSQL's maintenance database, or SQL Server (master by default)."""
    if urlsplit(value).scheme in SQLSERVER_SCHEMES:
        return _url(value, SQLSERVER_SCHEMES, "SQL Server")
    return _url(value, ("postgresql", "postgres"), "PostgreSQL or SQL Server", path=True)


def _amqp(value: str) -> str:
    return _url(value, ("amqp", "amqps"), "RabbitMQ")


def _http(value: str) -> str:
    return _url(value, ("https", "http"), "HTTP")


# URLs, checked when the settings are read (a scheme, a host; a database for PostgreSQL).
DatabaseUrl = Annotated[str, AfterValidator(_database)]
ServerUrl = Annotated[str, AfterValidator(_server)]
AmqpUrl = Annotated[str, AfterValidator(_amqp)]
WebUrl = Annotated[str, AfterValidator(_http)]


class TenantSettings(BaseModel):
    """One tenant of `EDFI_IM_TENANTS`: its own admin database, and where its ODS databases go
    (each unset field falls back to the top-level setting of the same name)."""

    model_config = ConfigDict(extra="forbid")

    admin_database_url: DatabaseUrl
    ods_server_url: ServerUrl | None = None
    ods_connection_string_template: str | None = None
    ods_connection_string_options: str | None = None
    ods_api_username: str | None = None
    ods_api_password: SecretStr | None = None
    database_name_pattern: str | None = None
    templates: dict[str, str] | None = None
    sqlserver_template_backups: dict[str, str] | None = None
    clone_concurrency: int | None = Field(default=None, ge=1, le=64)
    edfi_api_discovery_url: str | None = None

    @field_validator("database_name_pattern")
    @classmethod
    def _pattern_has_name(cls, value: str | None) -> str | None:
        return None if value is None else check_name_pattern(value)


class DeploymentSettings(BaseModel):
    """Which deployment this is and how it logs."""

    environment: Literal["development", "production"] = "production"
    service_name: str = "edfi-im"
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"


class AdminDatabaseSettings(BaseModel):
    """The EdFi_Admin database: instances, jobs, schedules, API clients."""

    admin_database_url: DatabaseUrl = "postgresql://postgres@127.0.0.1:5432/EdFi_Admin"


class OdsServerSettings(BaseModel):
    """The ODS database server, its templates, and the connection strings the ODS/API reads."""

    ods_server_url: ServerUrl = "postgresql://postgres@127.0.0.1:5432/postgres"
    ods_connection_string_template: str | None = None
    ods_connection_string_options: str = "pooling=true;Application Name=EdFi.Ods.WebApi"
    # The credentials written into the connection strings the ODS/API reads (its own, not the
    # ones this system uses to create and drop databases); unset: those of ods_server_url.
    ods_api_username: str | None = None
    ods_api_password: SecretStr | None = None
    database_name_pattern: str = "EdFi_Ods_{name}"
    templates: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_TEMPLATES))
    clone_concurrency: int = Field(default=2, ge=1, le=64)
    # SQL Server: template database -> a .bak on the SQL Server host's own disk, restored for
    # each create. A template not named here is backed up (COPY_ONLY) from the template
    # database and that backup restored. Azure SQL Database copies the template instead.
    sqlserver_template_backups: dict[str, str] = Field(default_factory=dict)
    # Where restored files and template backups go; unset: the server's defaults
    # (SERVERPROPERTY InstanceDefaultDataPath, InstanceDefaultLogPath, InstanceDefaultBackupPath).
    sqlserver_data_directory: str | None = None
    sqlserver_log_directory: str | None = None
    sqlserver_backup_directory: str | None = None
    # The key the ODS/API decrypts connection strings with: base64 of 32 bytes.
    encryption_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "ODS_CONNECTION_STRING_ENCRYPTION_KEY", "EDFI_IM_ENCRYPTION_KEY"
        ),
    )

    @field_validator("database_name_pattern")
    @classmethod
    def _pattern_has_name(cls, value: str) -> str:
        return check_name_pattern(value)

    @field_validator("encryption_key")
    @classmethod
    def _key_is_32_bytes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value():
            decode_encryption_key(value.get_secret_value())
        return value


class BrokerSettings(BaseModel):
    """RabbitMQ, the shards and the outbox relay."""

    rabbitmq_url: AmqpUrl = "amqp://guest:guest@127.0.0.1:5672/"
    shard_count: int = Field(default=8, ge=1, le=1024)
    owned_shards: str | None = None
    standby_delay_seconds: float = Field(default=3.0, ge=0)
    membership_interval_seconds: float = Field(default=2.0, gt=0)
    # Poison messages are rejected at once; this only stops a message that keeps killing its
    # worker. Crashes, stalls and hand-overs each count a delivery (RabbitMQ 4's default: 20).
    delivery_limit: int = Field(default=20, ge=1)
    graceful_timeout_seconds: float = Field(default=600.0, gt=0)
    outbox_poll_interval_seconds: float = Field(default=0.2, gt=0)
    outbox_batch_size: int = Field(default=100, ge=1)
    startup_wait_seconds: float = Field(default=120.0, gt=0)
    watchdog_interval_seconds: float = Field(default=5.0, gt=0)
    watchdog_grace_seconds: float = Field(default=20.0, gt=0)


class ProvisioningSettings(BaseModel):
    """How the provisioner works through a command, and whether commands are accepted at all
    (the kill switch: instance management off, or only its destructive operations)."""

    instance_management_enabled: bool = True
    destructive_operations_enabled: bool = True

    heartbeat_interval_seconds: float = Field(default=10.0, gt=0)
    # A provisioning step is reported once it has lasted this long (0: every step at once).
    progress_delay_seconds: float = Field(default=0.5, ge=0)
    step_retry_attempts: int = Field(default=5, ge=1)


class RecoverySettings(BaseModel):
    """Nothing stuck: orphaned jobs (seed 004's OrphanedJobsCheckInterval and
    OrphanedJobThreshold) and the status service's retries."""

    orphan_check_interval_seconds: float = Field(default=300.0, gt=0)
    orphan_threshold_seconds: float = Field(default=1800.0, gt=0)
    max_recoveries: int = Field(default=3, ge=0)
    status_retry_attempts: int = Field(default=8, ge=1)


class SchedulerSettings(BaseModel):
    """Schedules (seed 003: Quartz's misfire threshold is 60 s) and the maintenance jobs."""

    misfire_threshold_seconds: float = Field(default=60.0, ge=0)
    scheduler_poll_interval_seconds: float = Field(default=1.0, gt=0)
    scheduler_batch_size: int = Field(default=50, ge=1)
    scheduler_max_fires_per_pass: int = Field(default=100, ge=1)
    # What the prune job keeps: finished jobs, runs, inbox and sent outbox rows younger than this.
    retention_days: float = Field(default=30.0, gt=0)


class AuthSettings(BaseModel):
    """Authentication (Ed-Fi Admin API 2's convention: OAuth2 client credentials)."""

    registration_enabled: bool = False
    jwt_signing_key: SecretStr | None = None
    token_lifetime_seconds: int = Field(default=1800, ge=60, le=86_400)
    token_issuer: str = "edfi-instance-manager"  # noqa: S105 - a name, not a secret
    token_audience: str = "edfi-instance-manager"  # noqa: S105 - a name, not a secret
    oidc_issuer: WebUrl | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: WebUrl | None = None
    # /connect/token: wrong secrets for one client id before it is refused for a while.
    token_max_failures: int = Field(default=5, ge=1, le=1000)
    token_lockout_seconds: float = Field(default=60.0, gt=0, le=86_400)

    @field_validator("jwt_signing_key")
    @classmethod
    def _signing_key_is_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and 0 < len(value.get_secret_value().encode()) < 32:
            raise ValueError("EDFI_IM_JWT_SIGNING_KEY must be at least 32 bytes long")
        return value


class GatewaySettings(BaseModel):
    """The gateway's HTTP side, the Ed-Fi Admin Console's, and the consumers' health ports."""

    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(default=65_536, ge=1024)
    max_page_size: int = Field(default=500, ge=1)
    # The Ed-Fi Admin Console (`/adminconsole`): origins its browser pages are served from, the
    # template its creates use (it names none), and the ODS/API it shows for a tenant.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    console_database_template: str = "Minimal"
    edfi_api_discovery_url: str | None = None
    health_port: int | None = Field(default=None, ge=1, le=65535)
    # Ed-Fi Admin API's routes: the version `GET /` announces (Admin App then calls that
    # version's routes; both are served).
    admin_api_mode: Literal["v2", "v3"] = "v2"
    # An instance's database facts (size, online, sessions), read from the ODS server when one
    # instance is asked for: how long to wait for them (0: never read them).
    instance_facts_timeout_seconds: float = Field(default=2.0, ge=0, le=30)
    # Where the consumers' /health and /metrics listen: this machine only, unless opened (a
    # container whose health is checked from outside, a Prometheus on another host).
    health_host: str = "127.0.0.1"

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        """Comma-separated (`https://console.example.org,http://localhost:8598`) or `*`."""
        if isinstance(value, str):
            return [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
        return value


class EventsSettings(BaseModel):
    """The gateway's streams of changes (`GET /v2/events`) and its dashboard."""

    # A comment line this often keeps proxies from closing an idle stream.
    events_heartbeat_seconds: float = Field(default=15.0, gt=0, le=3600)
    # Changes are kept this long for streams that resume with Last-Event-ID.
    events_retention_seconds: float = Field(default=86_400.0, gt=0)
    # The newest changes each gateway keeps in memory for its streams (older ones: a query).
    events_buffer_size: int = Field(default=2000, ge=10)
    # A stream whose client takes no data for this long is closed (it may resume).
    events_send_timeout_seconds: float = Field(default=30.0, gt=0)
    # Streams one gateway serves at once; more are refused with 503.
    events_max_streams: int = Field(default=1000, ge=1)
    # Fallback poll of the change feed, should a NOTIFY be missed (a dropped connection).
    events_poll_interval_seconds: float = Field(default=2.0, gt=0)
    # The dashboard's sign-in at the OIDC issuer (authorization code with PKCE): the public
    # client registered there for it, and the scopes it asks for.
    dashboard_oidc_client_id: str | None = None
    dashboard_oidc_scope: str = "openid edfi_admin_api/full_access"


class Settings(
    DeploymentSettings,
    AdminDatabaseSettings,
    OdsServerSettings,
    BrokerSettings,
    ProvisioningSettings,
    RecoverySettings,
    SchedulerSettings,
    AuthSettings,
    GatewaySettings,
    EventsSettings,
    BaseSettings,
):
    """Every setting of every service, grouped by concern (the README has the same table); read
    once from the environment (prefix EDFI_IM_) and checked then: URLs, bounds, secrets' form."""

    model_config = SettingsConfigDict(env_prefix="EDFI_IM_", extra="ignore")

    # Multi-tenant mode (Ed-Fi Admin API 2's `tenant` header): name -> the tenant's settings.
    # Empty: single-tenant mode, everything in `admin_database_url` and `ods_server_url`.
    tenants: Annotated[dict[str, TenantSettings], NoDecode] = Field(default_factory=dict)

    # The tenant these settings were resolved for (`for_tenant`); None at the top level.
    _tenant: str | None = PrivateAttr(default=None)

    @field_validator("tenants", mode="before")
    @classmethod
    def _tenants_json(cls, value: Any) -> Any:
        """`EDFI_IM_TENANTS` is JSON; empty (as docker compose passes an unset one) is none."""
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"EDFI_IM_TENANTS is not valid JSON: {exc}") from None
        return value

    @model_validator(mode="after")
    def _tenants_apart(self) -> Settings:
        """Tenants never share an admin database, nor the database names on one ODS server."""
        seen: dict[str, str] = {}
        for name in self.tenants:
            if not TENANT_NAME.fullmatch(name):
                raise ValueError(
                    f"EDFI_IM_TENANTS: tenant name {name!r} must be 1-50 letters, digits or '-' "
                    "(the `tenant` header's rule)"
                )
            if name.lower() in seen:
                raise ValueError(
                    f"EDFI_IM_TENANTS: tenants {seen[name.lower()]!r} and {name!r} differ only "
                    "in case"
                )
            seen[name.lower()] = name
        admin: dict[str, str] = {}
        places: dict[tuple[str, str], str] = {}
        for name in self.tenants:
            resolved = self.for_tenant(name)
            url = resolved.admin_database_url
            if url in admin:
                raise ValueError(
                    f"EDFI_IM_TENANTS: tenants {admin[url]!r} and {name!r} share an admin "
                    "database (each tenant needs an admin_database_url of its own)"
                )
            admin[url] = name
            place = (resolved.ods_server_url, resolved.database_name_pattern.lower())
            if place in places:
                raise ValueError(
                    f"EDFI_IM_TENANTS: tenants {places[place]!r} and {name!r} would name their "
                    "ODS databases alike on one server: give them different "
                    "database_name_pattern values"
                )
            places[place] = name
        return self

    @model_validator(mode="after")
    def _threshold_above_heartbeat(self) -> Settings:
        if self.orphan_threshold_seconds <= 3 * self.heartbeat_interval_seconds:
            raise ValueError(
                f"EDFI_IM_ORPHAN_THRESHOLD_SECONDS ({self.orphan_threshold_seconds:g}) must "
                "exceed 3 x EDFI_IM_HEARTBEAT_INTERVAL_SECONDS "
                f"({self.heartbeat_interval_seconds:g}), or live jobs would be taken for orphans"
            )
        return self

    @property
    def tenant(self) -> str | None:
        """The tenant these settings belong to (None in single-tenant mode)."""
        return self._tenant

    @property
    def multi_tenant(self) -> bool:
        return bool(self.tenants)

    def for_tenant(self, name: str) -> Settings:
        """These settings with the tenant's own values in place of the top-level ones."""
        overrides = self.tenants[name].model_dump(exclude_none=True)
        resolved = self.model_copy(update=overrides)
        resolved._tenant = name
        return resolved

    def tenant_settings(self) -> dict[str | None, Settings]:
        """Each tenant's settings; {None: self} in single-tenant mode."""
        if not self.tenants:
            return {None: self}
        return {name: self.for_tenant(name) for name in self.tenants}

    def protected_databases(self, server_url: str) -> dict[str, str]:
        """The databases of the ODS server at `server_url` that this system never acts on (a
        name in lower case -> why): the server's own, every template and every admin or
        maintenance database this deployment has there."""
        every = [self, *self.tenant_settings().values()]
        return protected_databases(
            server_url,
            (t for s in every for t in s.templates.values()),
            (
                place
                for s in every
                for place in (
                    (s.admin_database_url, "an admin database (EdFi_Admin) of this system"),
                    (s.ods_server_url, "the ODS server's maintenance database"),
                )
            ),
        )

    def find_tenant(self, name: str) -> str | None:
        """The configured tenant of that name, ignoring case; None when there is none."""
        wanted = name.lower()
        return next((t for t in self.tenants if t.lower() == wanted), None)

    @property
    def switch(self) -> Switch:
        return Switch(self.instance_management_enabled, self.destructive_operations_enabled)

    @property
    def is_development(self) -> bool:
        return self.environment == "development"

    def encryption_key_bytes(self) -> bytes:
        """The 32-byte key; outside development a missing key is a start-up error."""
        raw = self.encryption_key.get_secret_value() if self.encryption_key else None
        if not raw:
            if not self.is_development:
                raise ConfigurationError(
                    "ODS_CONNECTION_STRING_ENCRYPTION_KEY is not set; it must hold a base64 "
                    "32-byte key (the one the ODS/API uses). Set EDFI_IM_ENVIRONMENT=development "
                    "to use the public development key."
                )
            raw = DEVELOPMENT_ENCRYPTION_KEY
        return decode_encryption_key(raw)  # its form was checked when the settings were read

    def signing_key(self) -> str:
        """The HS256 key of the gateway's tokens; outside development a missing or short key is
        a start-up error."""
        raw = self.jwt_signing_key.get_secret_value() if self.jwt_signing_key else ""
        if not raw:
            if not self.is_development:
                raise ConfigurationError(
                    "EDFI_IM_JWT_SIGNING_KEY is not set: the gateway signs its access tokens with "
                    "it (at least 32 characters; every gateway replica needs the same one)"
                )
            return EPHEMERAL_JWT_SIGNING_KEY
        return raw  # at least 32 bytes: checked when the settings were read

    @property
    def uses_development_key(self) -> bool:
        return self.encryption_key is None or not self.encryption_key.get_secret_value()

    def owned_shard_set(self) -> list[int]:
        """Shards this replica consumes first; the rest it joins later as standby."""
        if not self.owned_shards:
            return list(range(self.shard_count))
        owned: set[int] = set()
        for part in self.owned_shards.split(","):
            part = part.strip()
            if not part:
                continue
            match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not match:
                raise ConfigurationError(f"EDFI_IM_OWNED_SHARDS: cannot read {part!r}")
            low = int(match.group(1))
            high = int(match.group(2) or low)
            if high < low:
                raise ConfigurationError(f"EDFI_IM_OWNED_SHARDS: {part!r} is a reversed range")
            owned.update(range(low, high + 1))
        bad = sorted(s for s in owned if s >= self.shard_count)
        if bad:
            raise ConfigurationError(
                f"EDFI_IM_OWNED_SHARDS names shards {bad} but there are {self.shard_count}"
            )
        return sorted(owned)


def _setting_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable a validation error's location stands for."""
    if not loc:
        return ""
    head, rest = str(loc[0]), [str(part) for part in loc[1:]]
    name = head if head.isupper() else f"EDFI_IM_{head.upper()}"
    if head == "tenants" and rest:
        where = f"tenant {rest[0]!r}" + (f", {'.'.join(rest[1:])}" if rest[1:] else "")
        return f"{name} ({where})"
    return ".".join([name, *rest])


def describe_settings_error(exc: ValidationError | SettingsError) -> str:
    """A settings error as one line naming each setting and its rule."""
    if isinstance(exc, SettingsError):
        # pydantic-settings: a dict or list setting that is not JSON.
        match = re.search(r'field "([^"]+)"', str(exc))
        field = f"EDFI_IM_{match.group(1).upper()}" if match else "a setting"
        return f"{field}: must be JSON ({exc})"
    parts = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        name = _setting_name(tuple(error["loc"]))
        if name and not message.startswith(name.split(" ")[0]):
            message = f"{name}: {message}"
        if error["type"] not in {"value_error", "assertion_error"} and "input" in error:
            given = error["input"]
            secret = any(w in name for w in ("KEY", "SECRET", "PASSWORD", "URL", "TENANTS"))
            if isinstance(given, str) and not secret:
                message += f" (got {given[:60]!r})"
        parts.append(message)
    return "; ".join(parts)


def load_settings() -> Settings:
    """The settings from the environment; a ConfigurationError of one readable line when a
    setting breaks a rule (the command line prints it and exits with 2)."""
    try:
        return Settings()
    except (ValidationError, SettingsError) as exc:
        raise ConfigurationError(describe_settings_error(exc)) from None
