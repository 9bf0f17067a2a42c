"""The connection string written to dbo.odsinstances, built from this service's own config."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from services.runtime.settings import Settings


def _escape(value: str) -> str:
    # Npgsql connection-string values: quote when they hold ';', '=' or quotes.
    if any(c in value for c in ";='\"") or value != value.strip():
        return '"' + value.replace('"', '""') + '"'
    return value


def ods_connection_string(settings: Settings, database: str) -> str:
    """An Npgsql connection string for `database`, the form ODS/API 7 reads for PostgreSQL."""
    if settings.ods_connection_string_template:
        return settings.ods_connection_string_template.replace("{database}", database)
    url = urlsplit(settings.ods_server_url)
    parts = [
        f"host={_escape(url.hostname or 'localhost')}",
        f"port={url.port or 5432}",
        f"username={_escape(unquote(url.username or 'postgres'))}",
    ]
    if url.password:
        parts.append(f"password={_escape(unquote(url.password))}")
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
