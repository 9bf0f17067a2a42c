"""The databases this system never renames, drops or ends the sessions of, and the server a
database belongs to: a rule every service applies (the provisioner before it acts, the import
before it adopts a row another tool wrote)."""

from __future__ import annotations

from urllib.parse import urlsplit

from services.runtime.settings import Settings

SYSTEM_DATABASES = frozenset({"postgres", "template0", "template1"})
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def server_of(host: str | None, port: int | str | None) -> tuple[str, int]:
    """A server as (host, port), loopback names counted as one, 5432 when unsaid."""
    name = (host or "localhost").strip().lower()
    return ("localhost" if name in LOOPBACK else name), int(port or 5432)


def server_of_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return server_of(parts.hostname, parts.port)


def protected_databases(settings: Settings, server_url: str) -> dict[str, str]:
    """Lower-cased database name -> why it is never acted on, for the ODS server at
    `server_url`: the server's own databases, every configured template, every admin database
    and maintenance database that lives on that server."""
    server = server_of_url(server_url)
    found = {name: "it is a system database of the server" for name in SYSTEM_DATABASES}
    every = [settings, *settings.tenant_settings().values()]
    for resolved in every:
        for template in resolved.templates.values():
            found[template.lower()] = "it is a configured template"
        for url, role in (
            (resolved.admin_database_url, "an admin database (EdFi_Admin) of this system"),
            (resolved.ods_server_url, "the ODS server's maintenance database"),
        ):
            parts = urlsplit(url)
            name = (parts.path or "/").lstrip("/")
            if name and server_of(parts.hostname, parts.port) == server:
                found[name.lower()] = f"it is {role}"
    return found
