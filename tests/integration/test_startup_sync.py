"""Start-up sync (seed 001): dbo.odsinstances rows made by other Ed-Fi tools get an
edfi_im.dbinstances row exactly once, even when several status replicas start together."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime import crypto
from services.runtime.tables import db_instances, ods_instances
from services.status.sync import import_ods_instances

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
    engine: AsyncEngine, encryption_key: bytes
) -> None:
    name = f"Other Tool {uuid.uuid4().hex[:6]}"
    plain = f"host=db;port=5432;username=u;password=p;database=EdFi_Ods_{uuid.uuid4().hex[:6]}"
    good = await _foreign_row(engine, name, crypto.encrypt(plain, encryption_key))
    wrong_key = await _foreign_row(engine, name + " b", crypto.encrypt(plain, b"k" * 32))
    results = await asyncio.gather(
        import_ods_instances(engine, encryption_key),
        import_ods_instances(engine, encryption_key),
        import_ods_instances(engine, encryption_key),
    )
    everything = [ods for result in results for ods in result]
    assert everything.count(good) == 1
    assert everything.count(wrong_key) == 1
    (row,) = await _rows_for(engine, good)
    assert row.status == "Completed"  # type: ignore[attr-defined]
    assert row.name == name  # type: ignore[attr-defined]
    assert row.imported is True  # type: ignore[attr-defined]
    assert row.databasename == plain.rsplit("database=", 1)[1]  # type: ignore[attr-defined]
    (unreadable,) = await _rows_for(engine, wrong_key)
    assert unreadable.databasename is None  # type: ignore[attr-defined]
    assert "could not be decrypted" in unreadable.error  # type: ignore[attr-defined]
    assert good not in await import_ods_instances(engine, encryption_key)


async def test_a_row_whose_name_a_live_instance_has_is_not_imported_twice_over(
    engine: AsyncEngine, encryption_key: bytes
) -> None:
    name = f"Clash {uuid.uuid4().hex[:6]}"
    first = await _foreign_row(engine, name, None)
    second = await _foreign_row(engine, name.upper(), None)
    imported = await import_ods_instances(engine, encryption_key)
    assert first in imported
    assert second not in imported
    async with engine.connect() as conn:
        live = await conn.scalar(
            select(func.count())
            .select_from(db_instances)
            .where(func.lower(db_instances.c.name) == name.lower())
        )
    assert live == 1
