"""The connection string written to dbo.odsinstances, built from this service's own config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from services.rules import crypto


class Settings(Protocol):
    """What a connection string is built from (services/runtime/settings.py has it)."""

    @property
    def ods_server_url(self) -> str: ...
    @property
    def ods_connection_string_template(self) -> str | None: ...
    @property
    def ods_connection_string_options(self) -> str | None: ...
    @property
    def ods_api_username(self) -> str | None: ...
    @property
    def ods_api_password(self) -> SecretStr | None: ...


SPECIAL = ";='\""
SQLSERVER_SCHEMES = ("mssql", "mssql+aioodbc", "mssql+pyodbc")


def _needs_quotes(value: str) -> bool:
    return any(c in value for c in SPECIAL) or value != value.strip()


def _escape(value: str) -> str:
    # Npgsql connection-string values: quote when they hold ';', '=' or quotes.
    if _needs_quotes(value):
        return '"' + value.replace('"', '""') + '"'
    return value


def quoting_warning(settings: Settings) -> str | None:
    """Why the connection strings this system writes may be misread by tools other than the
    ODS/API, or None. Npgsql and the ODS/API read quoted values; tools that split a connection
    string on ';' and '=' without reading quotes (edfi-oneroster's parser, for one) get the
    user name or password wrong."""
    if settings.ods_connection_string_template:
        template = settings.ods_connection_string_template
        if not any(f"{sep}{q}" in template for sep in ("=", "= ") for q in "\"'"):
            return None
        where = "EDFI_IM_ODS_CONNECTION_STRING_TEMPLATE has a quoted value"
    else:
        username, password = ods_api_credentials(settings)
        fields = {"user name": username, "password": password or ""}
        quoted = [what for what, value in fields.items() if value and _needs_quotes(value)]
        if not quoted:
            return None
        where = (
            f"the ODS/API's {' and '.join(quoted)} (EDFI_IM_ODS_API_USERNAME/PASSWORD, or those "
            "of EDFI_IM_ODS_SERVER_URL) hold ';', '=', a quote or surrounding spaces, so the "
            "connection strings written to dbo.odsinstances quote them"
        )
    return (
        f"{where}. The ODS/API (Npgsql) reads quoted values, but tools that split a connection "
        "string on ';' and '=' naively (edfi-oneroster, for one) will read a wrong password. "
        "Give the ODS/API credentials without these characters, or set "
        "EDFI_IM_ODS_CONNECTION_STRING_TEMPLATE to a string those tools can read."
    )


def ods_api_credentials(settings: Settings) -> tuple[str, str | None]:
    """The user name and password the ODS/API gets: its own when set, else the server URL's."""
    url = urlsplit(settings.ods_server_url)
    if settings.ods_api_username:
        password = settings.ods_api_password
        return settings.ods_api_username, password.get_secret_value() if password else None
    return unquote(url.username or "postgres"), unquote(url.password) if url.password else None


def shared_credentials_warning(settings: Settings) -> str | None:
    """Why the ODS/API should have credentials of its own, when it has this system's."""
    if settings.ods_connection_string_template:
        return None
    url = urlsplit(settings.ods_server_url)
    server_user = unquote(url.username or "postgres")
    if ods_api_credentials(settings)[0] != server_user:
        return None
    return (
        "the connection strings written to dbo.odsinstances give the ODS/API the credentials "
        "this system uses on the ODS server (EDFI_IM_ODS_SERVER_URL), which may create, rename "
        "and drop databases: give the ODS/API a login of its own with EDFI_IM_ODS_API_USERNAME "
        "and EDFI_IM_ODS_API_PASSWORD (or EDFI_IM_ODS_CONNECTION_STRING_TEMPLATE)"
    )


def is_sqlserver(url: str) -> bool:
    return urlsplit(url).scheme in SQLSERVER_SCHEMES


def ods_connection_string(settings: Settings, database: str) -> str:
    """The connection string the ODS/API reads for `database`: Npgsql's form for PostgreSQL,
    SqlClient's (`Server=host,port;Database=…;User ID=…;Password=…`) for SQL Server."""
    if settings.ods_connection_string_template:
        return settings.ods_connection_string_template.replace("{database}", database)
    url = urlsplit(settings.ods_server_url)
    username, password = ods_api_credentials(settings)
    if is_sqlserver(settings.ods_server_url):
        parts = [
            "Server=" + _escape(f"{url.hostname or 'localhost'},{url.port or 1433}"),
            f"Database={_escape(database)}",
            f"User ID={_escape(username)}",
        ]
        if password:
            parts.append(f"Password={_escape(password)}")
        if settings.ods_connection_string_options:
            parts.append(settings.ods_connection_string_options.strip(";"))
        return ";".join(parts)
    parts = [
        f"host={_escape(url.hostname or 'localhost')}",
        f"port={url.port or 5432}",
        f"username={_escape(username)}",
    ]
    if password:
        parts.append(f"password={_escape(password)}")
    parts.append(f"database={_escape(database)}")
    if settings.ods_connection_string_options:
        parts.append(settings.ods_connection_string_options.strip(";"))
    return ";".join(parts)


def parse_connection_string(value: str) -> dict[str, str]:
    """Split `key=value;…` (values possibly double-quoted) into lower-case keys."""
    out: dict[str, str] = {}
    i, n = 0, len(value)
    while i < n:
        eq = value.find("=", i)
        if eq < 0:
            break
        key = value[i:eq].strip().lower()
        i = eq + 1
        if i < n and value[i] == '"':
            i += 1
            buf = []
            while i < n:
                if value[i] == '"' and i + 1 < n and value[i + 1] == '"':
                    buf.append('"')
                    i += 2
                elif value[i] == '"':
                    i += 1
                    break
                else:
                    buf.append(value[i])
                    i += 1
            val = "".join(buf)
            semi = value.find(";", i)
            i = n if semi < 0 else semi + 1
        else:
            semi = value.find(";", i)
            end = n if semi < 0 else semi
            val = value[i:end].strip()
            i = end + 1
        if key:
            out[key] = val
    return out


@dataclass(frozen=True)
class Place:
    """Where a connection string points."""

    host: str | None
    port: str | None
    database: str


def place_of(connection_string: str | None, key: bytes) -> tuple[Place | None, str | None]:
    """Where an encrypted connection string points, or None and why not."""
    if not connection_string:
        return None, "dbo.odsinstances has no connection string"
    try:
        plain = crypto.decrypt(connection_string, key)
    except crypto.DecryptionError as exc:
        return None, f"the connection string could not be decrypted: {exc}"
    parts = parse_connection_string(plain)
    name = parts.get("database") or parts.get("initial catalog")
    if not name:
        return None, "the connection string names no database"
    host, port = server_address(parts)
    return Place(host, port, name), None


def server_address(parts: dict[str, str]) -> tuple[str | None, str | None]:
    """Host and port of a parsed connection string: Npgsql's `host`/`port`, or SqlClient's
    `Server` / `Data Source` (`tcp:host,1433`, `host\\instance`; 1433 when unsaid)."""
    if parts.get("host"):
        return parts["host"], parts.get("port")
    server = parts.get("server") or parts.get("data source") or parts.get("address")
    if not server:
        return None, parts.get("port")
    server = server.strip()
    if server.lower().startswith("tcp:"):
        server = server[4:]
    host, _, port = server.partition(",")
    host = host.split("\\", 1)[0].strip()
    return host or None, (port.strip() or "1433")


def database_of(connection_string: str | None, key: bytes) -> tuple[str | None, str | None]:
    """The database an encrypted connection string names, or None and why not."""
    place, problem = place_of(connection_string, key)
    return (place.database if place else None), problem
