"""Create the admin database if missing and apply the SQL migrations in infra/migrations."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url
from yoyo import get_backend, read_migrations

from services.runtime.db import with_driver
from services.runtime.logging import get_logger
from services.runtime.settings import Settings

log = get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "infra" / "migrations" / "postgresql"


def maintenance_url(url: str) -> str:
    """The same server's `postgres` database, for CREATE DATABASE."""
    return make_url(url).set(database="postgres").render_as_string(hide_password=False)


def ensure_database(url: str) -> bool:
    """Create the database named in `url` if it does not exist; True when created."""
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


def migrate(url: str) -> list[str]:
    """Apply pending migrations (yoyo takes a lock, so concurrent runs are safe)."""
    ensure_database(url)
    backend = get_backend(with_driver(url, "psycopg"))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    applied = [m.id for m in pending]
    log.info("migrations applied", applied=applied)
    return applied


def admin_database_urls(settings: Settings) -> list[str]:
    """The top-level admin database (API clients) and each tenant's, once each."""
    urls = [settings.admin_database_url]
    urls += [s.admin_database_url for s in settings.tenant_settings().values()]
    return list(dict.fromkeys(urls))


def migrate_all(settings: Settings) -> None:
    for url in admin_database_urls(settings):
        migrate(url)
