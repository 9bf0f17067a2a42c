"""Before a service starts: an admin database that does not exist is a set-up mistake to say in
one line (the services would otherwise end in a traceback), not a server to wait for."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.admin_db.engine import create_admin_engine
from services.rules.errors import ConfigurationError
from services.runtime import dberrors
from services.runtime.settings import Settings

# PostgreSQL's invalid_catalog_name: "database … does not exist".
MISSING_DATABASE = "3D000"


async def admin_databases_exist(settings: Settings) -> None:
    """ConfigurationError naming the setting of the first admin database that does not exist.
    A server that does not answer is left to the services, which wait for it."""
    places = [("EDFI_IM_ADMIN_DATABASE_URL", settings.admin_database_url)] + [
        (f"EDFI_IM_TENANTS (tenant {name!r}, admin_database_url)", tenant.admin_database_url)
        for name, tenant in settings.tenants.items()
    ]
    for setting, url in places:
        if not url.startswith(("postgresql:", "postgres:")):
            continue  # SQL Server's admin database: its errors are worded by the services
        engine = create_admin_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except DBAPIError as exc:
            if dberrors.sqlstate(exc) == MISSING_DATABASE:
                name = urlsplit(url).path.lstrip("/")
                raise ConfigurationError(
                    f"{setting}: the admin database {name!r} does not exist; create and migrate "
                    "it with `edfi-im migrate` (`just setup`)"
                ) from None
        except OSError:
            pass
        finally:
            await engine.dispose()
