"""API clients of the gateway: the one module that writes `edfi_im.clients` (the secret stored
as a hash, never in clear)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.admin_db.tables import clients
from services.rules.errors import ConflictError


async def add(
    engine: AsyncEngine,
    *,
    client_id: str,
    secret_hash: str,
    display_name: str,
    tenants: list[str] | None,
    scopes: list[str] | None,
) -> None:
    """A new client; a ConflictError naming ClientId when the id is taken."""
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(clients).values(
                    client_id=client_id,
                    secret_hash=secret_hash,
                    display_name=display_name,
                    tenants=tenants,
                    scopes=scopes,
                )
            )
    except IntegrityError:
        raise ConflictError(
            f"a client with id {client_id!r} is already registered",
            errors={"ClientId": ["is taken"]},
        ) from None


async def get(engine: AsyncEngine, client_id: str) -> Row[Any] | None:
    async with engine.connect() as conn:
        row: Row[Any] | None = (
            await conn.execute(select(clients).where(clients.c.client_id == client_id))
        ).first()
    return row


async def every(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    select(
                        clients.c.client_id,
                        clients.c.display_name,
                        clients.c.tenants,
                        clients.c.scopes,
                    ).order_by(clients.c.client_id)
                )
            ).all()
        )


async def remove(engine: AsyncEngine, client_id: str) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(delete(clients).where(clients.c.client_id == client_id))
    return bool(result.rowcount)
