"""Start-up sync (seed 001): every dbo.odsinstances row without an edfi_im.dbinstances row gets
one, so instances made by other Ed-Fi tools are visible and manageable here."""

from __future__ import annotations

from sqlalchemy import exists, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime import crypto
from services.runtime.logging import get_logger
from services.runtime.states import InstanceStatus
from services.runtime.tables import db_instances, ods_instances
from services.status.connection_strings import parse_connection_string

log = get_logger(__name__)

# pg advisory lock key "edfi-im sync": replicas starting together import one at a time.
SYNC_LOCK_KEY = 0x0ED1F1_5E7C
UNKNOWN_TEMPLATE = "Unknown"


def database_of(connection_string: str | None, key: bytes) -> tuple[str | None, str | None]:
    """The database an encrypted connection string names, or None and why not."""
    if not connection_string:
        return None, "dbo.odsinstances has no connection string"
    try:
        plain = crypto.decrypt(connection_string, key)
    except crypto.DecryptionError as exc:
        return None, f"the connection string could not be decrypted: {exc}"
    parts = parse_connection_string(plain)
    name = parts.get("database") or parts.get("initial catalog")
    if not name:
        return None, "the connection string names no database"
    return name, None


async def import_ods_instances(engine: AsyncEngine, key: bytes) -> list[int]:
    """Import missing rows; safe to run repeatedly and from several replicas at once."""
    imported: list[int] = []
    async with engine.begin() as conn:
        await conn.execute(select(func.pg_advisory_xact_lock(SYNC_LOCK_KEY)))
        rows = (
            await conn.execute(
                select(ods_instances)
                .where(
                    ~exists().where(db_instances.c.odsinstanceid == ods_instances.c.odsinstanceid)
                )
                .order_by(ods_instances.c.odsinstanceid)
            )
        ).all()
        for row in rows:
            database, problem = database_of(row.connectionstring, key)
            try:
                async with conn.begin_nested():
                    await conn.execute(
                        insert(db_instances).values(
                            name=row.name,
                            odsinstanceid=row.odsinstanceid,
                            odsinstancename=row.name,
                            status=InstanceStatus.COMPLETED.value,
                            databasetemplate=UNKNOWN_TEMPLATE,
                            databasename=database,
                            error=problem,
                            imported=True,
                            lastrefreshed=func.now(),
                            lastmodifieddate=func.now(),
                            createdat=func.now(),
                        )
                    )
            except IntegrityError:
                log.warning(
                    "dbo.odsinstances row not imported: a live instance already has its name "
                    "or database",
                    ods_instance_id=row.odsinstanceid,
                    name=row.name,
                )
                continue
            imported.append(row.odsinstanceid)
            log.info(
                "imported dbo.odsinstances row",
                ods_instance_id=row.odsinstanceid,
                name=row.name,
                database_name=database,
                problem=problem,
            )
    return imported
