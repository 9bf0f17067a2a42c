"""Development template databases (`EdFi_Ods_Minimal_Template`, `EdFi_Ods_Populated_Template`).

Built under a staging name and renamed when complete, so a half-built template never exists.
Never touches a template that already exists: in production the real ones are there.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from services.rules.connection_strings import is_sqlserver
from services.runtime.logging import get_logger
from services.runtime.settings import Settings

log = get_logger(__name__)

TEMPLATE_SQL = Path(__file__).resolve().parent / "ods_templates"  # package data
SOURCES = {"Minimal": "minimal.sql", "Sample": "populated.sql"}


def _script(filename: str) -> str:
    """The SQL file with `\\i other.sql` includes expanded."""
    lines = []
    for line in (TEMPLATE_SQL / filename).read_text().splitlines():
        if line.startswith("\\i "):
            lines.append(_script(line[3:].strip()))
        else:
            lines.append(line)
    return "\n".join(lines)


def _with_database(url: str, database: str) -> str:
    return psycopg.conninfo.make_conninfo(url, dbname=database)


def ensure_templates(server_url: str, templates: dict[str, str]) -> list[str]:
    """Create each missing development template; returns the names created."""
    created = []
    with psycopg.connect(server_url, autocommit=True) as admin:
        for key, database in templates.items():
            source = SOURCES.get(key)
            if source is None:
                log.info("no development source for template; skipped", template=key)
                continue
            exists = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
            ).fetchone()
            if exists:
                continue
            staging = f"{database}__building"[:63]
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(staging))
            )
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(staging)))
            with psycopg.connect(_with_database(server_url, staging), autocommit=True) as conn:
                conn.execute(_script(source).encode())
            admin.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(staging), sql.Identifier(database)
                )
            )
            # A template nobody can connect to can always be cloned.
            admin.execute(
                sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(
                    sql.Identifier(database)
                )
            )
            log.info("development template created", template=key, database=database)
            created.append(database)
    return created


def ensure_all_templates(settings: Settings) -> list[str]:
    """The development templates on every tenant's ODS server."""
    created: list[str] = []
    for resolved in settings.tenant_settings().values():
        if is_sqlserver(resolved.ods_server_url):
            # SQL Server's templates are Ed-Fi's .bak files (or databases restored from them):
            # nothing is made up here.
            log.info("no development templates are made on SQL Server")
            continue
        created += ensure_templates(resolved.ods_server_url, resolved.templates)
    return created
