"""The admin schema the migrations create is the one the code's table definitions describe."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime.migrate import migrate
from services.runtime.tables import metadata
from tests.support import pg

pytestmark = pytest.mark.integration


def test_migrating_again_applies_nothing(admin_database: str) -> None:
    assert migrate(pg.database_url(admin_database)) == []


async def test_tables_match_the_code(engine: AsyncEngine) -> None:
    def columns(sync_conn: object) -> dict[str, set[str]]:
        insp = inspect(sync_conn)
        out = {}
        for table in metadata.tables.values():
            cols = insp.get_columns(table.name, schema=table.schema)
            out[f"{table.schema}.{table.name}"] = {c["name"] for c in cols}
        return out

    async with engine.connect() as conn:
        actual = await conn.run_sync(columns)
    for key, table in metadata.tables.items():
        assert actual[key] == {c.name for c in table.columns}, f"drift in {key}"
