"""Level 2 of SQL Server's verification, the schema: the T-SQL migrations (read with sqlglot's
T-SQL parser) build exactly the tables the SQLModel definitions describe (columns, types,
nullability, keys, foreign keys, unique constraints), PostgreSQL's migrations all have their
T-SQL counterpart, and the development copy of Ed-Fi's MsSql dbo tables has every column this
system uses with Ed-Fi's type and nullability. (tests/integration/test_migrations.py checks the
same definitions against the migrated PostgreSQL database.)"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlglot
from sqlalchemy import Table, UniqueConstraint
from sqlalchemy.dialects import mssql
from sqlglot import exp

from services.admin_db import migrate as pg_migrate
from services.admin_db.migrate_mssql import EDFI_ADMIN_COPY, MIGRATIONS_DIR, batches
from services.admin_db.tables import POSTGRES_ONLY, SCHEMA, metadata

DIALECT = mssql.dialect()  # type: ignore[no-untyped-call]
ROOT = Path(__file__).resolve().parents[2]
# Ed-Fi names this column differently on SQL Server; this system never names it in a statement.
EDFI_RENAMED = {
    ("apiclientapplicationeducationorganizations", "applicationedorg_applicationedorgid"),
}


@dataclass
class ParsedTable:
    columns: dict[str, tuple[str, bool]] = field(default_factory=dict)  # name -> (type, null)
    primary_key: set[str] = field(default_factory=set)
    foreign_keys: set[tuple[str, str]] = field(default_factory=set)  # (column, table.column)
    unique: set[frozenset[str]] = field(default_factory=set)


def parse(*scripts: str) -> dict[str, ParsedTable]:
    """schema.table (lower case) -> what the scripts create."""
    tables: dict[str, ParsedTable] = {}
    for script in scripts:
        for batch in batches(script):
            for statement in sqlglot.parse(batch, read="tsql"):
                if isinstance(statement, exp.Create) and statement.kind == "TABLE":
                    _table(statement, tables)
                elif isinstance(statement, exp.Create) and statement.kind == "INDEX":
                    _index(statement, tables)
    return tables


def _name(table: exp.Table) -> str:
    return f"{table.db}.{table.name}".lower()


def _table(statement: exp.Create, tables: dict[str, ParsedTable]) -> None:
    schema = statement.this
    parsed = tables.setdefault(_name(schema.this), ParsedTable())
    for item in schema.expressions:
        if isinstance(item, exp.ColumnDef):
            column = item.name.lower()
            nullable = True
            for constraint in item.constraints:
                kind = constraint.kind
                if isinstance(kind, exp.NotNullColumnConstraint):
                    nullable = bool(kind.args.get("allow_null"))
                elif isinstance(kind, exp.PrimaryKeyColumnConstraint):
                    parsed.primary_key.add(column)
                    nullable = False
                elif isinstance(kind, exp.UniqueColumnConstraint):
                    parsed.unique.add(frozenset({column}))
                elif isinstance(kind, exp.Reference):
                    target = kind.this
                    parsed.foreign_keys.add(
                        (column, f"{_name(target.this)}.{target.expressions[0].name.lower()}")
                    )
            assert item.kind is not None, column
            parsed.columns[column] = (item.kind.sql("tsql").upper(), nullable)
        else:
            text = item.sql("tsql")
            columns = frozenset(
                c.lower() for c in re.findall(r"\(([^)]*)\)", text)[0].replace(" ", "").split(",")
            )
            if "PRIMARY KEY" in text:
                parsed.primary_key |= columns
            elif "UNIQUE" in text:
                parsed.unique.add(columns)


def _index(statement: exp.Create, tables: dict[str, ParsedTable]) -> None:
    if not statement.args.get("unique"):
        return
    index = statement.this
    table = tables[_name(index.args["table"])]
    columns = frozenset(
        c.this.name.lower() if isinstance(c, exp.Ordered) else c.name.lower()
        for c in index.args["params"].args["columns"]
    )
    table.unique.add(columns)


def _family(type_sql: str) -> str:
    """A type as both sides can state it: N(VAR)CHAR = (VAR)CHAR, INTEGER = INT."""
    t = type_sql.upper().replace("INTEGER", "INT").replace(" ", "")
    t = re.sub(r"^N(VARCHAR|CHAR)", r"\1", t)
    return t.replace("TEXT", "VARCHAR(MAX)")


def _model(table: Table) -> ParsedTable:
    parsed = ParsedTable()
    for column in table.columns:
        type_sql = column.type.compile(dialect=DIALECT)
        parsed.columns[column.name.lower()] = (type_sql, bool(column.nullable))
        if column.primary_key:
            parsed.primary_key.add(column.name.lower())
        if column.unique:
            parsed.unique.add(frozenset({column.name.lower()}))
        for fk in column.foreign_keys:
            parsed.foreign_keys.add((column.name.lower(), fk.target_fullname.lower()))
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint):
            parsed.unique.add(frozenset(c.name.lower() for c in constraint.columns))
    return parsed


MIGRATED = parse(*(p.read_text() for p in sorted(MIGRATIONS_DIR.glob("*.sql"))))
# The change feed's table is PostgreSQL's alone (tables.POSTGRES_ONLY): no T-SQL counterpart.
OWN = [t for t in metadata.sorted_tables if t.schema == SCHEMA and t.name not in POSTGRES_ONLY]
DBO = [t for t in metadata.sorted_tables if t.schema == "dbo"]


@pytest.mark.parametrize("table", OWN, ids=lambda t: t.name)
def test_tsql_migrations_build_the_tables_the_models_describe(table: Table) -> None:
    model, migrated = _model(table), MIGRATED[f"{SCHEMA}.{table.name}"]
    assert set(migrated.columns) == set(model.columns)
    for name, (type_sql, nullable) in model.columns.items():
        tsql_type, tsql_nullable = migrated.columns[name]
        assert _family(tsql_type) == _family(type_sql), name
        assert tsql_nullable == nullable, name
    assert migrated.primary_key == model.primary_key
    assert migrated.foreign_keys == model.foreign_keys
    assert model.unique <= migrated.unique


def test_every_table_of_the_migrations_is_a_model() -> None:
    assert set(MIGRATED) == {f"{SCHEMA}.{t.name}" for t in OWN}


def test_every_postgresql_migration_has_its_tsql_counterpart() -> None:
    """A new PostgreSQL migration needs a T-SQL one of the same id (or to be listed as covered
    by an earlier T-SQL migration)."""
    covered = set()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        covered.add(path.stem)
        header = "".join(line for line in path.read_text().splitlines() if line.startswith("--"))
        covered |= set(re.findall(r"\b\d{4}_\w+", header))
    postgres = {p.stem for p in pg_migrate.MIGRATIONS_DIR.glob("*.sql")}
    assert postgres <= covered, sorted(postgres - covered)


EDFI_DBO = parse(EDFI_ADMIN_COPY.read_text())


@pytest.mark.parametrize("table", DBO, ids=lambda t: t.name)
def test_edfi_admin_mssql_copy_has_the_columns_this_system_uses(table: Table) -> None:
    copy = EDFI_DBO[f"dbo.{table.name}"]
    for name, (type_sql, nullable) in _model(table).columns.items():
        if (table.name, name) in EDFI_RENAMED:
            assert name not in copy.columns
            continue
        tsql_type, tsql_nullable = copy.columns[name]
        assert _family(tsql_type) == _family(type_sql), name
        assert tsql_nullable == nullable, name


def test_the_column_ed_fi_renamed_on_sql_server_is_named_by_no_statement() -> None:
    for path in (ROOT / "services").rglob("*.py"):
        if path.name == "tables.py":
            continue
        for _, column in EDFI_RENAMED:
            assert column not in path.read_text(), path


def test_edfi_admin_mssql_copy_keeps_ed_fis_keys_and_delete_actions() -> None:
    script = EDFI_ADMIN_COPY.read_text()
    assert EDFI_DBO["dbo.apiclients"].unique >= {frozenset({"key"})}
    assert EDFI_DBO["dbo.odsinstances"].unique >= {frozenset({"name", "instancetype"})}
    # Only the two client-token tables cascade (as on PostgreSQL): nothing into OdsInstances.
    assert script.count("ON DELETE CASCADE") == 4
    assert len(EDFI_DBO) == 13
