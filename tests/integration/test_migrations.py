"""The admin schema the migrations create is the one the code's table definitions describe, and
Ed-Fi's dbo tables have what the code reads and writes."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import UniqueConstraint, inspect
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from services.admin_db.migrate import migrate
from services.admin_db.tables import SCHEMA, metadata
from tests.support import pg

pytestmark = pytest.mark.integration

DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def test_migrating_again_applies_nothing(admin_database: str) -> None:
    assert migrate(pg.database_url(admin_database)) == []


def _type(t: Any) -> str:
    return str(t.compile(dialect=DIALECT)).replace("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ")


async def test_tables_match_the_code(engine: AsyncEngine) -> None:
    """Every column the code declares exists with the same type, nullability and key; this
    system's own tables have no column the code does not know (Ed-Fi's have more)."""

    def described(sync_conn: object) -> dict[str, dict[str, Any]]:
        insp = inspect(sync_conn)
        out = {}
        for table in metadata.tables.values():
            cols = {c["name"]: c for c in insp.get_columns(table.name, schema=table.schema)}
            pk = insp.get_pk_constraint(table.name, schema=table.schema)["constrained_columns"]
            fks = {
                (
                    tuple(fk["constrained_columns"]),
                    f"{fk['referred_schema']}.{fk['referred_table']}",
                    tuple(fk["referred_columns"]),
                    (fk.get("options") or {}).get("ondelete"),
                )
                for fk in insp.get_foreign_keys(table.name, schema=table.schema)
            }
            unique = {
                tuple(u["column_names"])
                for u in insp.get_unique_constraints(table.name, schema=table.schema)
            }
            out[table.fullname] = {"columns": cols, "pk": pk, "fks": fks, "unique": unique}
        return out

    async with engine.connect() as conn:
        actual = await conn.run_sync(described)
    for key, table in metadata.tables.items():
        found = actual[key]["columns"]
        if table.schema == SCHEMA:
            assert set(found) == {c.name for c in table.columns}, f"drift in {key}"
        for column in table.columns:
            assert column.name in found, f"{key}.{column.name} is missing"
            db = found[column.name]
            assert _type(db["type"]) == _type(column.type), f"{key}.{column.name} type"
            assert db["nullable"] == column.nullable, f"{key}.{column.name} nullability"
        assert sorted(actual[key]["pk"]) == sorted(c.name for c in table.primary_key), key
        if table.schema != SCHEMA:
            continue  # Ed-Fi's own keys are checked against Ed-Fi's (test_edfi_admin_schema)
        declared_fks = {
            (
                tuple(e.parent.name for e in fk.elements),
                fk.elements[0].column.table.fullname,
                tuple(e.column.name for e in fk.elements),
                fk.ondelete,
            )
            for fk in table.foreign_key_constraints
        }
        assert actual[key]["fks"] == declared_fks, f"{key} foreign keys"
        declared_unique = {
            tuple(c.name for c in u.columns)
            for u in table.constraints
            if isinstance(u, UniqueConstraint)
        } | {(c.name,) for c in table.columns if c.unique}
        assert actual[key]["unique"] == declared_unique, f"{key} unique constraints"
