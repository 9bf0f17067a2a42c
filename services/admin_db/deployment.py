"""This deployment's identity (edfi_im.deployment, made by the migrations): what the mark of a
database says besides its tenant and instance, so that another deployment's instance 7 on the
same ODS server is never taken for this one's."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.admin_db.tables import deployment


async def deployment_id(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        found = await conn.scalar(select(deployment.c.id))
    if found is None:
        raise LookupError("edfi_im.deployment is empty: run `edfi-im migrate`")
    return str(found)
