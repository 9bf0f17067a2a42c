"""Start-up sync (seed 001): every dbo.odsinstances row without an edfi_im.dbinstances row gets
one, so instances made by other Ed-Fi tools are visible and manageable here; but only rows that
name a database on this tenant's own ODS server, and never one of the databases this system
never acts on (a dbo row is anybody's to write: it must not steer the system at its own admin
database, a template, or another server). The rows are written by admin_db.instances."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from services.admin_db.instances import import_from_dbo
from services.rules.connection_strings import (
    Place,
    ods_connection_string,
    parse_connection_string,
    place_of,
    server_address,
)
from services.rules.protection import server_of
from services.runtime.settings import Settings


class Importable:
    """Which dbo rows may become instances here: those on this tenant's ODS server, naming no
    database this system never acts on."""

    def __init__(self, settings: Settings) -> None:
        ours = parse_connection_string(ods_connection_string(settings, "x"))
        self.server = server_of(*server_address(ours))
        self._protected = settings.protected_databases(settings.ods_server_url)

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

    def judge(connection_string: str | None) -> tuple[str | None, str | None, str | None]:
        place, problem = place_of(connection_string, key)
        if place is None:
            return None, problem, None
        return place.database, problem, rules.refusal(place)

    return await import_from_dbo(engine, judge)
