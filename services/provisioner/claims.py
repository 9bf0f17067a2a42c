"""Claiming a job before working on it: a job cancelled while its command waited is skipped, and
once claimed a job can no longer be cancelled (the gateway's cancel takes the same row lock)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime.states import JobStatus
from services.runtime.tables import jobs


class JobClaims:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def claim(self, job_id: uuid.UUID) -> bool:
        """False when the job was cancelled; True once it is claimed (or is not recorded in this
        admin database at all, as for a command sent by hand)."""
        async with self._engine.begin() as conn:
            status = await conn.scalar(
                select(jobs.c.status).where(jobs.c.id == job_id).with_for_update()
            )
            if status == JobStatus.CANCELLED.value:
                return False
            if status is not None:
                await conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id)
                    .where(jobs.c.claimed_at.is_(None))
                    .values(claimed_at=func.now())
                )
            return True
