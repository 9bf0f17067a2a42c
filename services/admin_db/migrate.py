"""Create the admin database if missing and apply the SQL migrations (package data: migrations/).

This system's tables live in their own schema, `edfi_im` (yoyo's bookkeeping tables too), never
in Ed-Fi's `dbo` or in `adminapi`, which Ed-Fi's Admin API owns. On a real EdFi_Admin nothing
here creates, alters or drops a `dbo` object; in development (and in the tests) a copy of Ed-Fi
7.3.2's own `dbo` tables is created where there is none.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url
from yoyo import get_backend, read_migrations

from services.admin_db import migrate_mssql
from services.admin_db.engine import with_driver
from services.admin_db.tables import SCHEMA
from services.rules.errors import ConfigurationError
from services.runtime.logging import get_logger
from services.runtime.settings import Settings

log = get_logger(__name__)

# Data files of the package (a wheel carries them; nothing is looked for in a source tree).
HERE = Path(__file__).resolve().parent
MIGRATIONS_DIR = HERE / "migrations"
EDFI_ADMIN_COPY = HERE / "edfi_admin" / "edfi_admin_dbo_v7.3.2.sql"
EDFI_ADMIN_VERSION = "7.3.2"

# pg advisory lock key "edfi-im schema": one process adopts or builds a layout at a time.
LAYOUT_LOCK_KEY = 0x0ED1F1_5C4E

# Before the schema had its own name, this system's tables were in `adminapi` and yoyo's in
# `public`. Each table is moved only if it is this system's (it has the column named here) and
# edfi_im has none of that name: Admin API's own adminapi tables are never touched.
LEGACY_TABLES = {
    "dbinstances": "currentjobid",
    "jobs": "progress_message",
    "outbox": "routing_key",
    "inbox": "consumer",
    "schedules": "misfire_policy",
    "schedule_runs": "scheduled_fire_time",
    "clients": "secret_hash",
}
YOYO_TABLES = ("_yoyo_migration", "_yoyo_log", "_yoyo_version", "yoyo_lock")
FIRST_MIGRATION = "0001_edfi_admin_dbo_subset"


def maintenance_url(url: str) -> str:
    """The same server's `postgres` database, for CREATE DATABASE."""
    return make_url(url).set(database="postgres").render_as_string(hide_password=False)


def is_mssql(url: str) -> bool:
    return make_url(url).get_backend_name() == "mssql"


def ensure_database(url: str) -> bool:
    """Create the database named in `url` if it does not exist; True when created."""
    if is_mssql(url):
        return migrate_mssql.ensure_database(url)
    name = make_url(url).database
    assert name, "the admin database URL names no database"
    with psycopg.connect(maintenance_url(url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            return False
    log.info("admin database created", database=name)
    return True


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _table_exists(conn: psycopg.Connection[tuple[object, ...]], schema: str, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
        (schema, table),
    ).fetchone()
    return row is not None


def _has_column(
    conn: psycopg.Connection[tuple[object, ...]], schema: str, table: str, column: str
) -> bool:
    row = conn.execute(
        "SELECT 1 FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s AND column_name = %s",
        (schema, table, column),
    ).fetchone()
    return row is not None


def adopt_legacy_layout(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """Move this system's tables from an older layout into its own schema, rows and all (the
    caller's transaction). Returns what was moved."""
    moved: list[str] = []
    if (
        _table_exists(conn, "public", "_yoyo_migration")
        and not _table_exists(conn, SCHEMA, "_yoyo_migration")
        and conn.execute(
            "SELECT 1 FROM public._yoyo_migration WHERE migration_id = %s", (FIRST_MIGRATION,)
        ).fetchone()
    ):
        for table in YOYO_TABLES:
            if _table_exists(conn, "public", table):
                conn.execute(
                    sql.SQL("ALTER TABLE public.{} SET SCHEMA {}").format(
                        sql.Identifier(table), sql.Identifier(SCHEMA)
                    )
                )
                moved.append(f"public.{table}")
    for table, signature in LEGACY_TABLES.items():
        if (
            _table_exists(conn, "adminapi", table)
            and _has_column(conn, "adminapi", table, signature)
            and not _table_exists(conn, SCHEMA, table)
        ):
            conn.execute(
                sql.SQL("ALTER TABLE adminapi.{} SET SCHEMA {}").format(
                    sql.Identifier(table), sql.Identifier(SCHEMA)
                )
            )
            moved.append(f"adminapi.{table}")
    return moved


def has_edfi_admin(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    return _table_exists(conn, "dbo", "odsinstances")


def create_edfi_admin_copy(url: str) -> bool:
    """Create the development copy of Ed-Fi's dbo tables unless the database has them;
    True when created. Never for a real EdFi_Admin (it has them)."""
    if is_mssql(url):
        return migrate_mssql.create_edfi_admin_copy(url)
    with psycopg.connect(_libpq(url)) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LAYOUT_LOCK_KEY,))
        if has_edfi_admin(conn):
            return False
        conn.execute(EDFI_ADMIN_COPY.read_text())
    log.warning(
        "created a development copy of Ed-Fi's EdFi_Admin dbo tables",
        database=make_url(url).database,
        edfi_version=EDFI_ADMIN_VERSION,
    )
    return True


def require_edfi_admin(url: str) -> None:
    """A ConfigurationError unless the database is an EdFi_Admin (has dbo.odsinstances)."""
    if is_mssql(url):
        if migrate_mssql.require_edfi_admin(url):
            return
    else:
        with psycopg.connect(_libpq(url)) as conn:
            if has_edfi_admin(conn):
                return
    database = make_url(url).database
    raise ConfigurationError(
        f"the admin database {database!r} has no dbo.odsinstances, so it is not an Ed-Fi "
        "EdFi_Admin: point EDFI_IM_ADMIN_DATABASE_URL (or the tenant's admin_database_url) at "
        "the EdFi_Admin your ODS/API uses, deployed with Ed-Fi's own scripts. In development, "
        "`just setup` (EDFI_IM_ENVIRONMENT=development) creates a copy of Ed-Fi "
        f"{EDFI_ADMIN_VERSION}'s tables."
    )


def migrate(url: str) -> list[str]:
    """Apply pending migrations (yoyo takes a lock, so concurrent runs are safe; SQL Server's
    own runner an application lock)."""
    if is_mssql(url):
        return migrate_mssql.migrate(url)
    ensure_database(url)
    with psycopg.connect(_libpq(url)) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LAYOUT_LOCK_KEY,))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        moved = adopt_legacy_layout(conn)
    if moved:
        log.warning("moved this system's tables into its own schema", schema=SCHEMA, moved=moved)
    backend = get_backend(with_driver(url, "psycopg") + f"?schema={SCHEMA}")
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    applied = [m.id for m in pending]
    log.info("migrations applied", applied=applied)
    return applied


def instance_database_urls(settings: Settings) -> list[str]:
    """The admin databases that hold instances: each tenant's, or the one of single-tenant
    mode. Each must be an EdFi_Admin."""
    return list(dict.fromkeys(s.admin_database_url for s in settings.tenant_settings().values()))


def admin_database_urls(settings: Settings) -> list[str]:
    """The top-level admin database (API clients) and each tenant's, once each."""
    return list(dict.fromkeys([settings.admin_database_url, *instance_database_urls(settings)]))


def migrate_all(settings: Settings) -> None:
    """Every admin database: in development, a copy of Ed-Fi's dbo where there is none; outside
    development, a clear refusal of a database that is not an EdFi_Admin. Then the migrations."""
    for url in instance_database_urls(settings):
        ensure_database(url)
        if settings.is_development:
            create_edfi_admin_copy(url)
        else:
            require_edfi_admin(url)
    for url in admin_database_urls(settings):
        migrate(url)
