"""Start-up sync (seed 001): every dbo.odsinstances row without an edfi_im.dbinstances row gets
one, so instances made by other Ed-Fi tools are visible and manageable here; but only rows that
name a database on this tenant's own ODS server, and never one of the databases this system
never acts on (a dbo row is anybody's to write: it must not steer the system at its own admin
database, a template, or another server)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.admin_db.tables import db_instances, ods_instances
from services.rules import crypto
from services.rules.connection_strings import ods_connection_string, parse_connection_string
from services.rules.protection import protected_databases, server_of
from services.rules.states import InstanceStatus
from services.runtime.logging import get_logger
from services.runtime.settings import Settings

log = get_logger(__name__)

# pg advisory lock key "edfi-im sync": replicas starting together import one at a time.
SYNC_LOCK_KEY = 0x0ED1F1_5E7C
UNKNOWN_TEMPLATE = "Unknown"


@dataclass(frozen=True)
class Place:
    """Where a connection string points."""

    host: str | None
    port: str | None
    database: str


def place_of(connection_string: str | None, key: bytes) -> tuple[Place | None, str | None]:
    """Where an encrypted connection string points, or None and why not."""
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
    host = parts.get("host") or parts.get("server") or parts.get("data source")
    return Place(host, parts.get("port"), name), None


def database_of(connection_string: str | None, key: bytes) -> tuple[str | None, str | None]:
    """The database an encrypted connection string names, or None and why not."""
    place, problem = place_of(connection_string, key)
    return (place.database if place else None), problem


class Importable:
    """Which dbo rows may become instances here: those on this tenant's ODS server, naming no
    database this system never acts on."""

    def __init__(self, settings: Settings) -> None:
        ours = parse_connection_string(ods_connection_string(settings, "x"))
        self.server = server_of(ours.get("host") or ours.get("server"), ours.get("port"))
        self._protected = protected_databases(settings, settings.ods_server_url)

    def refusal(self, place: Place) -> str | None:
        """Why a row pointing there is not imported, or None."""
        if server_of(place.host, place.port) != self.server:
            host, port = server_of(place.host, place.port)
            return (
                f"it points at {host}:{port}, not at this tenant's ODS server "
                f"({self.server[0]}:{self.server[1]})"
            )
        why = self._protected.get(place.database.lower())
        return f"it names {place.database!r}: {why}" if why else None


async def import_ods_instances(engine: AsyncEngine, key: bytes, settings: Settings) -> list[int]:
    """Import missing rows; safe to run repeatedly and from several replicas at once."""
    rules = Importable(settings)
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
            place, problem = place_of(row.connectionstring, key)
            refusal = rules.refusal(place) if place is not None else None
            if refusal is not None:
                log.warning(
                    "dbo.odsinstances row not imported",
                    ods_instance_id=row.odsinstanceid,
                    name=row.name,
                    reason=refusal,
                )
                continue
            database = place.database if place else None
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
