"""A tenant's instances as Ed-Fi Admin API lists them (`/v2/tenants/{t}/odsInstances/edOrgs`):
every `dbo.OdsInstances` row by name, with this system's instance when it has one, then the
instances not in dbo (not created yet, failed, deleted); and the education organizations Admin
API caches in `adminapi.EducationOrganizations`, when Admin API is installed beside this system."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.admin_db.dialect import is_mssql
from services.admin_db.tables import db_instances, jobs, ods_instances
from services.rules.states import InstanceStatus


@dataclass
class Listed:
    """One element of the listing: a dbo row (`ods`), this system's instance (`instance`), or
    both."""

    ods: Row[Any] | None
    instance: Row[Any] | None
    education_organizations: list[dict[str, Any]] = field(default_factory=list)


async def tenant_listing(conn: AsyncConnection) -> list[Listed]:
    instances = (
        await conn.execute(
            select(db_instances, jobs.c.status.label("job_status"))
            .outerjoin(jobs, jobs.c.id == db_instances.c.currentjobid)
            .order_by(db_instances.c.id)
        )
    ).all()
    dbo = (await conn.execute(select(ods_instances).order_by(ods_instances.c.name))).all()
    in_dbo = {o.odsinstanceid for o in dbo}
    # The latest instance of each dbo row (a row is one instance's, but say which if not).
    latest: dict[int, Row[Any]] = {}
    for row in sorted(instances, key=lambda r: r.lastmodifieddate or r.lastrefreshed):
        if row.odsinstanceid is not None:
            latest[row.odsinstanceid] = row
    listed = [Listed(o, latest.get(o.odsinstanceid)) for o in dbo]
    listed += [
        Listed(None, r)
        for r in instances
        if r.odsinstanceid is None and r.status != InstanceStatus.DELETED.value
    ]
    listed += [Listed(None, r) for ods_id, r in sorted(latest.items()) if ods_id not in in_dbo]
    organizations = await education_organizations(conn, sorted(in_dbo))
    for item in listed:
        if item.ods is not None:
            item.education_organizations = organizations.get(item.ods.odsinstanceid, [])
    return listed


async def education_organizations(
    conn: AsyncConnection, ods_ids: list[int]
) -> dict[int, list[dict[str, Any]]]:
    """Admin API's cache of each instance's education organizations; none when Admin API's
    table is not there (this system does not read ODS databases for them)."""
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if not ods_ids:
        return found
    probe = (
        "SELECT OBJECT_ID('adminapi.EducationOrganizations')"
        if is_mssql(conn)
        else "SELECT to_regclass('adminapi.educationorganizations')"
    )
    if await conn.scalar(text(probe)) is None:
        return found
    rows = await conn.execute(
        text(
            "SELECT instanceid, educationorganizationid, nameofinstitution, "
            "shortnameofinstitution, discriminator, parentid "
            "FROM adminapi.educationorganizations WHERE instanceid IN :ids "
            "ORDER BY instanceid, educationorganizationid"
        ).bindparams(bindparam("ids", expanding=True)),
        {"ids": ods_ids},
    )
    for r in rows:
        found[r.instanceid].append(
            {
                "educationOrganizationId": r.educationorganizationid,
                "nameOfInstitution": r.nameofinstitution,
                "shortNameOfInstitution": r.shortnameofinstitution,
                "discriminator": r.discriminator,
                "parentId": r.parentid,
            }
        )
    return found
