"""Ed-Fi's EdFi_Admin as production has it, and Ed-Fi's Admin API beside this system.

- The development copy of dbo is Ed-Fi 7.3.2's (compared with a description pinned from a real
  EdFi_Admin built with Ed-Fi's 37 scripts): drift fails here.
- The migrations never create, alter or drop a dbo object, and put every table of this system
  in its own schema.
- Admin API's adminapi tables, installed as Admin API installs them (tests/fixtures), and this
  system's migrations work in either order, and leave each other's tables as they were.
- An installation from before the schema was renamed moves to it without losing a row.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from services.admin_db.migrate import (
    LEGACY_TABLES,
    YOYO_TABLES,
    ensure_database,
    migrate,
    migrate_all,
)
from services.admin_db.tables import SCHEMA
from services.rules.errors import ConfigurationError
from services.runtime.settings import Settings
from tests.conftest import RUN_ID
from tests.support import pg

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DESCRIBE = (FIXTURES / "describe_schema.sql").read_text()
PINNED = json.loads((FIXTURES / "edfi_admin_dbo_v7.3.2.json").read_text())
ADMIN_API = (FIXTURES / "admin_api_adminapi_b6224a88.sql").read_text()
STEP = re.compile(r"^-- step (\S+) (\S+)\s*$", re.MULTILINE)


def admin_api_steps() -> list[tuple[str, str]]:
    """Admin API's install, one (id, sql) per script of its own, in its order."""
    marks = list(STEP.finditer(ADMIN_API))
    return [
        (m.group(1), ADMIN_API[m.start() : marks[i + 1].start() if i + 1 < len(marks) else None])
        for i, m in enumerate(marks)
    ]


def install_admin_api(database: str, until: str | None = None) -> None:
    """Admin API's adminapi tables, step by step as its deploy tool runs its scripts."""
    with psycopg.connect(pg.database_url(database), autocommit=True) as conn:
        for step, statements in admin_api_steps():
            conn.execute(statements)
            if step == until:
                return


def describe(database: str, schema: str) -> dict[str, Any]:
    with psycopg.connect(pg.database_url(database), autocommit=True) as conn:
        row = conn.execute(DESCRIBE, {"schema": schema}).fetchone()
    assert row is not None
    tables: dict[str, Any] = row[0]["tables"]
    return tables


def tables_in(database: str, schema: str) -> set[str]:
    rows = pg.query(
        database,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
        (schema,),
    )
    return {r[0] for r in rows}


@pytest.fixture
def fresh() -> Any:
    """A new, empty database of this test's own."""
    name = f"edfi_admin_schema_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    ensure_database(pg.database_url(name))
    yield name
    pg.drop_later(name)  # with the run's others, at its end (a drop waits for a checkpoint)


# Tables made after this system's schema had its own name (never in a legacy layout).
NEWER_TABLES = {"changes", "deployment"}
NEWER_MIGRATIONS = ["0012_changes", "0013_deployment", "0014_change_notify"]
OURS = set(LEGACY_TABLES) | set(YOYO_TABLES) | NEWER_TABLES


def test_the_development_copy_is_edfi_7_3_2s_dbo(fresh: str) -> None:
    pg.edfi_admin(fresh, migrated=False)
    assert describe(fresh, "dbo") == PINNED["tables"]
    # What the pinned description says of the points that hid production failures.
    ods = PINNED["tables"]["dbo.odsinstances"]
    assert {"name": "ux_name_instancetype", "columns": ["name", "instancetype"], "where": None} in (
        ods["unique"]
    )
    assert next(c for c in ods["columns"] if c["name"] == "connectionstring")["type"] == (
        "character varying(1500)"
    )
    links = PINNED["tables"]["dbo.apiclientodsinstances"]["foreign_keys"]
    assert {fk["on_delete"] for fk in links} == {"NO ACTION"}
    tokens = PINNED["tables"]["dbo.clientaccesstokens"]["foreign_keys"]
    assert [fk["on_delete"] for fk in tokens] == ["NO ACTION"]


def test_migrations_never_touch_dbo_and_keep_every_table_in_their_own_schema(fresh: str) -> None:
    pg.edfi_admin(fresh, migrated=False)
    before = describe(fresh, "dbo")
    migrate(pg.database_url(fresh))
    assert describe(fresh, "dbo") == before
    assert tables_in(fresh, SCHEMA) == OURS
    for schema in ("adminapi", "public"):
        assert tables_in(fresh, schema) == set(), schema


def test_outside_development_a_database_without_dbo_is_refused(
    fresh: str, settings: Settings
) -> None:
    prod = settings.model_copy(
        update={"admin_database_url": pg.database_url(fresh), "environment": "production"}
    )
    with pytest.raises(ConfigurationError, match=r"no dbo\.odsinstances"):
        migrate_all(prod)
    assert tables_in(fresh, SCHEMA) == set()  # refused before anything was written
    # In development a copy of Ed-Fi's tables is made first.
    migrate_all(prod.model_copy(update={"environment": "development"}))
    assert describe(fresh, "dbo") == PINNED["tables"]
    assert tables_in(fresh, SCHEMA) == OURS


@pytest.mark.parametrize("admin_api_until", [None, "00006"])
def test_admin_api_first_then_this_system(fresh: str, admin_api_until: str | None) -> None:
    """Admin API as released (its table already renamed to odsinstancemanages) and as built
    between March and July 2026 (adminapi.dbinstances still named so), then this system."""
    pg.edfi_admin(fresh, migrated=False)
    install_admin_api(fresh, until=admin_api_until)
    theirs = describe(fresh, "adminapi")
    migrate(pg.database_url(fresh))
    assert describe(fresh, "adminapi") == theirs
    assert tables_in(fresh, SCHEMA) == OURS


def test_this_system_first_then_admin_api(fresh: str) -> None:
    pg.edfi_admin(fresh)
    ours = describe(fresh, SCHEMA)
    install_admin_api(fresh)  # every step succeeds (the rename step failed before)
    assert "odsinstancemanages" in tables_in(fresh, "adminapi")
    manages = describe(fresh, "adminapi")["adminapi.odsinstancemanages"]
    assert manages["primary_key"] == ["id"]
    assert {i["name"] for i in manages["indexes"]} == {
        "idx_odsinstancemanages_name",
        "idx_odsinstancemanages_odsinstanceid",
    }
    assert describe(fresh, SCHEMA) == ours


def test_an_installation_from_before_the_rename_moves_without_losing_a_row(fresh: str) -> None:
    """Tables in adminapi and yoyo's in public, as this system had them, beside Admin API's own
    adminapi tables: a migrate moves this system's (rows and all) and only them."""
    pg.edfi_admin(fresh)
    url = pg.database_url(fresh)
    job, schedule = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {SCHEMA}.dbinstances (name, status, databasetemplate, databasename) "
            "VALUES ('Old One', 'Completed', 'Minimal', 'EdFi_Ods_Old_One')"
        )
        conn.execute(
            f"INSERT INTO {SCHEMA}.jobs (id, type, status) VALUES (%s, 'createInstance', "
            "'Completed')",
            (job,),
        )
        conn.execute(
            f"INSERT INTO {SCHEMA}.schedules (id, name, job_type, parameters, trigger, "
            "misfire_policy, allow_concurrent, state) VALUES (%s, 'Nightly', 'prune', '{}', "
            "'{}', 'fireOnceNow', false, 'Normal')",
            (schedule,),
        )
        conn.execute(
            f"INSERT INTO {SCHEMA}.clients (client_id, secret_hash, display_name) "
            "VALUES ('old-client', 'x', 'Old')"
        )
        # The layout of an installation made before this system had its own schema (so before
        # the migrations that came after it, too).
        conn.execute(f"DROP FUNCTION {SCHEMA}.record_change() CASCADE")
        conn.execute(f"DROP TABLE {SCHEMA}.changes")
        conn.execute(f"DROP SEQUENCE {SCHEMA}.changes_id_seq")
        conn.execute(f"DROP TABLE {SCHEMA}.deployment")
        conn.execute(
            f"DELETE FROM {SCHEMA}._yoyo_migration WHERE migration_id = ANY(%s)",
            (NEWER_MIGRATIONS,),
        )
        conn.execute("CREATE SCHEMA IF NOT EXISTS adminapi")
        for table in LEGACY_TABLES:
            conn.execute(f"ALTER TABLE {SCHEMA}.{table} SET SCHEMA adminapi")
        for table in YOYO_TABLES:
            conn.execute(f"ALTER TABLE {SCHEMA}.{table} SET SCHEMA public")
        conn.execute(f"DROP SCHEMA {SCHEMA}")
    install_admin_api(fresh, until="00004")  # Admin API's tables beside them
    theirs = {
        name: table
        for name, table in describe(fresh, "adminapi").items()
        if name.split(".")[1] not in LEGACY_TABLES
    }
    counts = {t: pg.query(fresh, f"SELECT count(*) FROM adminapi.{t}")[0][0] for t in LEGACY_TABLES}

    # yoyo's history came along: nothing is applied twice, only what came after the move.
    assert migrate(url) == NEWER_MIGRATIONS
    assert tables_in(fresh, SCHEMA) == OURS
    assert tables_in(fresh, "adminapi") == {n.split(".")[1] for n in theirs}
    assert describe(fresh, "adminapi") == theirs
    assert tables_in(fresh, "public") == set()
    for table, count in counts.items():
        assert pg.query(fresh, f"SELECT count(*) FROM {SCHEMA}.{table}")[0][0] == count, table
    assert counts["dbinstances"] == counts["jobs"] == counts["schedules"] == 1
    # The id sequence moved with its table: new rows keep counting.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {SCHEMA}.dbinstances (name, status, databasetemplate) "
            "VALUES ('New One', 'Pending', 'Minimal')"
        )
    assert pg.query(fresh, f"SELECT max(id) FROM {SCHEMA}.dbinstances")[0][0] == 2
