"""The admin database on SQL Server: create it if missing, the development copy of Ed-Fi's dbo
tables, and this system's T-SQL migrations (package data: migrations_mssql/), each applied in
one transaction under an application lock and recorded in edfi_im.schema_migrations. (yoyo,
which migrates PostgreSQL, has no SQL Server backend that works: its bookkeeping uses
TIMESTAMP, SQL Server's row version.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from services.admin_db.tables import SCHEMA
from services.rules import tsql
from services.rules.marker import lock_key
from services.runtime.logging import get_logger
from services.runtime.odbc import connection_string, database_of_url

log = get_logger(__name__)

HERE = Path(__file__).resolve().parent
MIGRATIONS_DIR = HERE / "migrations_mssql"
EDFI_ADMIN_COPY = HERE / "edfi_admin" / "edfi_admin_dbo_v7.3.2_mssql.sql"
LAYOUT_LOCK = tsql.lock_resource("l", lock_key("schema"))
_GO = re.compile(r"^\s*GO\s*$", re.IGNORECASE | re.MULTILINE)


def batches(script: str) -> list[str]:
    """A script's batches, split on `GO` lines as sqlcmd does."""
    return [b.strip() for b in _GO.split(script) if b.strip() and not _only_comments(b)]


def _only_comments(batch: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in batch.splitlines())


def _connect(url: str, *, database: str | None = None, autocommit: bool = False) -> Any:
    import pyodbc  # needs unixODBC: loaded only for SQL Server

    conn = pyodbc.connect(connection_string(url, database), autocommit=autocommit, timeout=15)
    conn.timeout = 0
    return conn


def ensure_database(url: str) -> bool:
    """Create the database named in `url` if it does not exist; True when created."""
    name = database_of_url(url)
    conn = _connect(url, database="master", autocommit=True)
    try:
        if conn.execute("SELECT DB_ID(?)", name).fetchone()[0] is not None:
            return False
        conn.execute(f"CREATE DATABASE {tsql.identifier(name)}")
    finally:
        conn.close()
    log.info("admin database created", database=name)
    return True


def has_edfi_admin(conn: Any) -> bool:
    return conn.execute("SELECT OBJECT_ID(N'dbo.OdsInstances', N'U')").fetchone()[0] is not None


def _locked(conn: Any) -> None:
    sql, params = tsql.wait_applock(LAYOUT_LOCK, owner="Session")
    conn.execute(sql, *params).fetchall()


def create_edfi_admin_copy(url: str) -> bool:
    """The development copy of Ed-Fi's dbo tables, unless the database has them."""
    conn = _connect(url)
    try:
        _locked(conn)
        if has_edfi_admin(conn):
            conn.rollback()
            return False
        for batch in batches(EDFI_ADMIN_COPY.read_text()):
            conn.execute(batch)
        conn.commit()
    finally:
        conn.close()
    log.warning("created a development copy of Ed-Fi's EdFi_Admin dbo tables (SQL Server)")
    return True


def require_edfi_admin(url: str) -> bool:
    conn = _connect(url)
    try:
        return has_edfi_admin(conn)
    finally:
        conn.close()


def migrate(url: str) -> list[str]:
    """Apply the pending T-SQL migrations, each in one transaction, one process at a time."""
    ensure_database(url)
    conn = _connect(url)
    applied: list[str] = []
    try:
        _locked(conn)
        conn.execute(f"IF SCHEMA_ID(N'{SCHEMA}') IS NULL EXEC(N'CREATE SCHEMA {SCHEMA}')")
        conn.execute(
            f"IF OBJECT_ID(N'{SCHEMA}.schema_migrations', N'U') IS NULL "
            f"CREATE TABLE {SCHEMA}.schema_migrations (id NVARCHAR(255) NOT NULL PRIMARY KEY, "
            "applied_at DATETIMEOFFSET NOT NULL DEFAULT SYSDATETIMEOFFSET())"
        )
        conn.commit()
        done = {r[0] for r in conn.execute(f"SELECT id FROM {SCHEMA}.schema_migrations")}
        for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
            if path.stem in done:
                continue
            for batch in batches(path.read_text()):
                conn.execute(batch)
            conn.execute(f"INSERT INTO {SCHEMA}.schema_migrations (id) VALUES (?)", path.stem)
            conn.commit()
            applied.append(path.stem)
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.close()
    log.info("migrations applied", applied=applied)
    return applied
