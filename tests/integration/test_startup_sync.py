"""Start-up sync (seed 001): dbo.odsinstances rows made by other Ed-Fi tools get an
edfi_im.dbinstances row exactly once, even when several status replicas start together."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.admin_db.dbo_import import import_ods_instances
from services.admin_db.tables import db_instances, ods_instances
from services.rules import crypto
from services.rules.connection_strings import ods_connection_string
from services.runtime.settings import Settings

pytestmark = pytest.mark.integration


async def _foreign_row(engine: AsyncEngine, name: str, connection_string: str | None) -> int:
    async with engine.begin() as conn:
        ods_id = await conn.scalar(
            insert(ods_instances)
            .values(name=name, instancetype="Other tool", connectionstring=connection_string)
            .returning(ods_instances.c.odsinstanceid)
        )
    assert isinstance(ods_id, int)
    return ods_id


async def _rows_for(engine: AsyncEngine, ods_id: int) -> list[object]:
    async with engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    select(db_instances).where(db_instances.c.odsinstanceid == ods_id)
                )
            ).all()
        )


async def test_rows_are_imported_once_with_the_database_from_the_connection_string(
    engine: AsyncEngine, encryption_key: bytes, settings: Settings
) -> None:
    name = f"Other Tool {uuid.uuid4().hex[:6]}"
    database = f"EdFi_Ods_{uuid.uuid4().hex[:6]}"
    plain = ods_connection_string(settings, database)
    good = await _foreign_row(engine, name, crypto.encrypt(plain, encryption_key))
    wrong_key = await _foreign_row(engine, name + " b", crypto.encrypt(plain, b"k" * 32))
    results = await asyncio.gather(
        import_ods_instances(engine, encryption_key, settings),
        import_ods_instances(engine, encryption_key, settings),
        import_ods_instances(engine, encryption_key, settings),
    )
    everything = [ods for result in results for ods in result]
    assert everything.count(good) == 1
    assert everything.count(wrong_key) == 1
    (row,) = await _rows_for(engine, good)
    assert row.status == "Completed"  # type: ignore[attr-defined]
    assert row.name == name  # type: ignore[attr-defined]
    assert row.imported is True  # type: ignore[attr-defined]
    assert row.databasename == database  # type: ignore[attr-defined]
    (unreadable,) = await _rows_for(engine, wrong_key)
    assert unreadable.databasename is None  # type: ignore[attr-defined]
    assert "could not be decrypted" in unreadable.error  # type: ignore[attr-defined]
    assert good not in await import_ods_instances(engine, encryption_key, settings)


async def test_a_row_whose_name_a_live_instance_has_is_not_imported_twice_over(
    engine: AsyncEngine, encryption_key: bytes, settings: Settings
) -> None:
    name = f"Clash {uuid.uuid4().hex[:6]}"
    first = await _foreign_row(engine, name, None)
    second = await _foreign_row(engine, name.upper(), None)
    imported = await import_ods_instances(engine, encryption_key, settings)
    assert first in imported
    assert second not in imported
    async with engine.connect() as conn:
        live = await conn.scalar(
            select(func.count())
            .select_from(db_instances)
            .where(func.lower(db_instances.c.name) == name.lower())
        )
    assert live == 1


async def test_rows_pointing_elsewhere_or_at_a_system_database_are_never_imported(
    engine: AsyncEngine, encryption_key: bytes, settings: Settings, admin_database: str
) -> None:
    """A dbo row is anybody's to write (issue 14: one naming the admin database, on another
    host, was imported and then renamed, ending every session of the admin database). Only
    rows on this tenant's ODS server that name no protected database become instances."""
    here = ods_connection_string(settings, "x")
    rows = {
        "other host": here.replace("host=127.0.0.1", "host=elsewhere.example.org"),
        "other port": here.replace("port=5432", "port=6543"),
        "admin database": ods_connection_string(settings, admin_database),
        "template": ods_connection_string(settings, settings.templates["Minimal"]),
        "system": ods_connection_string(settings, "postgres"),
    }
    ids = {
        what: await _foreign_row(
            engine, f"Foreign {what} {uuid.uuid4().hex[:6]}", crypto.encrypt(cs, encryption_key)
        )
        for what, cs in rows.items()
    }
    assert "host=127.0.0.1" in here and "port=5432" in here
    imported = await import_ods_instances(engine, encryption_key, settings)
    for what, ods_id in ids.items():
        assert ods_id not in imported, what
        assert await _rows_for(engine, ods_id) == [], what
    # The same host spelt as localhost is this server: imported.
    local = await _foreign_row(
        engine,
        f"Local {uuid.uuid4().hex[:6]}",
        crypto.encrypt(
            ods_connection_string(settings, "EdFi_Ods_Local").replace("127.0.0.1", "localhost"),
            encryption_key,
        ),
    )
    assert local in await import_ods_instances(engine, encryption_key, settings)
