"""The databases this system never renames, drops or ends the sessions of, and the server a
database belongs to: a rule every service applies (the provisioner before it acts, the import
before it adopts a row another tool wrote)."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

SYSTEM_DATABASES = frozenset(
    {"postgres", "template0", "template1", "master", "model", "msdb", "tempdb"}
)
SQLSERVER_SCHEMES = ("mssql", "mssql+aioodbc", "mssql+pyodbc")
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def server_of(host: str | None, port: int | str | None) -> tuple[str, int]:
    """A server as (host, port), loopback names counted as one, 5432 when unsaid."""
    name = (host or "localhost").strip().lower()
    return ("localhost" if name in LOOPBACK else name), int(port or 5432)


def server_of_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    default = 1433 if parts.scheme in SQLSERVER_SCHEMES else 5432
    return server_of(parts.hostname, parts.port or default)


def protected_databases(
    server_url: str, templates: Iterable[str], places: Iterable[tuple[str, str]]
) -> dict[str, str]:
    """Lower-cased database name -> why it is never acted on, for the ODS server at
    `server_url`: the server's own databases, every configured template, and every database of
    `places` ((URL, role): the admin and maintenance databases) that lives on that server."""
    server = server_of_url(server_url)
    found = {name: "it is a system database of the server" for name in SYSTEM_DATABASES}
    for template in templates:
        found[template.lower()] = "it is a configured template"
    for url, role in places:
        parts = urlsplit(url)
        name = (parts.path or "/").lstrip("/")
        if name and server_of_url(url) == server:
            found[name.lower()] = f"it is {role}"
    return found
