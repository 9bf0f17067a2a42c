"""`edfi-im adopt <instance id>`: an operator's deliberate decision that a database another Ed-Fi
tool made (imported from dbo.odsinstances) is now this system's to rename and drop. It writes
this system's mark on the database, under the instance's lock, after checking that the database
is on the tenant's ODS server, is none of those this system never acts on, and is unmarked."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from services.admin_db.deployment import deployment_id
from services.admin_db.engine import create_admin_engine, database_identity
from services.admin_db.tables import db_instances
from services.provisioner.membership import deployment_of
from services.rules.errors import PermanentError
from services.rules.marker import Marker
from services.rules.states import IN_FLIGHT, InstanceStatus
from services.runtime.logging import get_logger
from services.runtime.ods_servers import open_ods_server
from services.runtime.settings import Settings

log = get_logger(__name__)


class AdoptionRefusedError(PermanentError):
    """The database cannot be adopted."""


async def adopt(settings: Settings, tenant: str | None, instance_id: int) -> str:
    """Mark the instance's database as this system's; what was done, in words."""
    tenants = settings.tenant_settings()
    if tenant not in tenants:
        raise AdoptionRefusedError(
            "name the tenant with --tenant (EDFI_IM_TENANTS)"
            if tenant is None
            else f"no tenant named {tenant!r} is configured"
        )
    resolved = tenants[tenant]
    engine = create_admin_engine(resolved.admin_database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(select(db_instances).where(db_instances.c.id == instance_id))
            ).first()
        deployment = await deployment_id(engine)
    finally:
        await engine.dispose()
    if row is None or row.status == InstanceStatus.DELETED.value:
        raise AdoptionRefusedError(f"no live instance with id {instance_id}")
    if InstanceStatus(row.status) in IN_FLIGHT:
        raise AdoptionRefusedError(
            f"instance {instance_id} is {row.status}: wait for its operation to end"
        )
    database = row.databasename
    if not database:
        raise AdoptionRefusedError(
            f"instance {instance_id}'s database is not known (its connection string could not "
            "be read)"
        )
    protected = settings.protected_databases(resolved.ods_server_url)
    why = protected.get(database.lower())
    if why:
        raise AdoptionRefusedError(f"{database!r} is never this system's: {why}")
    server = open_ods_server(
        resolved, clone_slots=1, deployment=deployment_of(settings.rabbitmq_url)
    )
    scope = database_identity(resolved.admin_database_url)
    async with server.session(instance_id, scope=scope) as session:
        info = await session.database(database)
        if info is None:
            raise AdoptionRefusedError(f"{database!r} does not exist on the ODS server")
        if info.is_template:
            raise AdoptionRefusedError(f"{database!r} is a template")
        if info.marker is not None:
            if info.marker.names(tenant, instance_id, deployment):
                return f"{database!r} is already instance {instance_id}'s"
            raise AdoptionRefusedError(
                f"{database!r} is marked as another instance's ({info.marker.render()})"
            )
        await session.mark(database, Marker(instance_id, uuid.uuid4(), tenant, deployment))
    log.warning(
        "database adopted: this system may now rename and drop it",
        instance_id=instance_id,
        database_name=database,
        tenant=tenant,
    )
    return f"{database!r} adopted: instance {instance_id} may now be renamed and deleted here"
