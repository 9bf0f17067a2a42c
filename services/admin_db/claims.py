"""The job's side of the provisioner's work, in the tenant's admin database.

Claiming a job before working on it: a job cancelled while its command waited, or that has
ended meanwhile (given up by the orphan sweep, failed, done), or that is no longer its
instance's current job, is skipped; once claimed a job can no longer be cancelled (the gateway's
cancel takes the same row lock).

The fence around the step that changes the server for good: the job's row is locked for the
step's length, so the orphan sweep (which skips locked rows) cannot give it up meanwhile, and
the step is taken only if the job may still act; once it is done, the job records so.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.admin_db.tables import db_instances, jobs
from services.provisioner.handler import Claimed
from services.rules.states import JobStatus, is_terminal


class JobClaims:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def claim(self, job_id: uuid.UUID) -> Claimed:
        async with self._engine.begin() as conn:
            job = (
                await conn.execute(
                    select(jobs.c.status, jobs.c.instance_id)
                    .where(jobs.c.id == job_id)
                    .with_for_update()
                )
            ).first()
            if job is None:
                return Claimed.CLAIMED  # not recorded here at all: a command sent by hand
            if job.status == JobStatus.CANCELLED.value:
                return Claimed.CANCELLED
            if is_terminal(job.status) or not await self._current(conn, job_id, job.instance_id):
                return Claimed.ENDED
            await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .where(jobs.c.claimed_at.is_(None))
                .values(claimed_at=func.now())
            )
            return Claimed.CLAIMED

    @staticmethod
    async def _current(conn: AsyncConnection, job_id: uuid.UUID, instance_id: int | None) -> bool:
        if instance_id is None:
            return True
        current = await conn.scalar(
            select(db_instances.c.currentjobid).where(db_instances.c.id == instance_id)
        )
        return bool(current == job_id)

    @asynccontextmanager
    async def fence(self, job_id: uuid.UUID) -> AsyncIterator[bool]:
        async with self._engine.begin() as conn:
            job = (
                await conn.execute(
                    select(jobs.c.status, jobs.c.instance_id)
                    .where(jobs.c.id == job_id)
                    .with_for_update()
                )
            ).first()
            if job is None:  # a command sent by hand: nothing recorded to fence
                yield True
                return
            live = not is_terminal(job.status) and await self._current(
                conn, job_id, job.instance_id
            )
            yield live
            if live:
                await conn.execute(
                    update(jobs).where(jobs.c.id == job_id).values(server_done_at=func.now())
                )
