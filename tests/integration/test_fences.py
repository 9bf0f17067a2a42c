"""A give-up is a fence (invariant 8), with the real admin database and ODS server.

- A worker frozen at a rename's first step until the orphan sweep gave its job up does not
  rename when it wakes: the database keeps its name and the records stay true.
- A worker frozen after its last server step, before it could report: the sweep records the
  outcome as the fact it is (the rename happened), and the job's history says so; the worker's
  own report, arriving late, changes nothing.
- While a worker is inside its fence the sweep cannot give its job up.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.messages import (
    InstanceOperationStarted,
    InstanceRenamed,
    InstanceRequested,
    Message,
    Operation,
)
from services.admin_db import jobs as job_rows
from services.admin_db.accept import accept_create, accept_operation
from services.admin_db.engine import database_identity
from services.admin_db.tables import db_instances, jobs, ods_instances, outbox
from services.provisioner.handler import Provisioner
from services.rules import crypto
from services.rules.connection_strings import ods_connection_string
from services.rules.errors import ConflictError
from services.rules.marker import Marker
from services.rules.states import Switch
from services.runtime.ods_server import PostgresOdsServer
from services.runtime.settings import Settings
from services.status.events import ConnectionStrings, apply_event
from services.status.recovery import fail_job, recover_orphans
from tests.conftest import unique_name
from tests.support import pg

pytestmark = pytest.mark.integration


class Frozen:
    """Events of a worker that freezes when it publishes an event of a given kind, until let go
    (as a SIGSTOP would freeze it there)."""

    def __init__(self, at: type[Message]) -> None:
        self.at = at
        self.events: list[Message] = []
        self.frozen = asyncio.Event()
        self.thawed = asyncio.Event()

    async def __call__(self, event: Message) -> None:
        self.events.append(event)
        if isinstance(event, self.at) and not self.frozen.is_set():
            self.frozen.set()
            await self.thawed.wait()


@pytest.fixture
async def completed(
    engine: AsyncEngine, settings: Settings, encryption_key: bytes, db_prefix: str
) -> AsyncIterator[Any]:
    """A Completed instance with its database on the server (marked as its own) and its dbo
    row, as a create leaves them; the outbox rows written here are removed afterwards."""
    name = unique_name("Fenced")
    database = db_prefix + name.replace(" ", "_")
    async with engine.begin() as conn:
        row = await accept_create(
            conn,
            name=name,
            template_key="Minimal",
            template_database=settings.templates["Minimal"],
            database_name=database,
            correlation_id="test",
            switch=Switch(),
            tenant=None,
        )
        ods_id = await conn.scalar(
            ods_instances.insert()
            .values(
                name=name,
                connectionstring=crypto.encrypt(
                    ods_connection_string(settings, database), encryption_key
                ),
            )
            .returning(ods_instances.c.odsinstanceid)
        )
        await conn.execute(
            update(db_instances)
            .where(db_instances.c.id == row.id)
            .values(status="Completed", odsinstanceid=ods_id)
        )
        await conn.execute(
            update(jobs).where(jobs.c.id == row.currentjobid).values(status="Completed")
        )
    pg.create(database, Marker(row.id, row.currentjobid).render())
    yield row
    async with engine.begin() as conn:
        await conn.execute(delete(outbox).where(outbox.c.sent_at.is_(None)))
        await conn.execute(
            update(db_instances).where(db_instances.c.id == row.id).values(status="Deleted")
        )


async def _rename(engine: AsyncEngine, settings: Settings, row: Any) -> tuple[Any, Any]:
    new_name = unique_name("Fenced Renamed")
    new_database = settings.database_name_pattern.format(name=new_name.replace(" ", "_"))
    async with engine.begin() as conn:
        accepted = await accept_operation(
            conn,
            row.id,
            Operation.RENAME,
            correlation_id="test",
            switch=Switch(),
            tenant=None,
            new_name=new_name,
            new_database_name=new_database,
        )
        job = (await conn.execute(select(jobs).where(jobs.c.id == accepted.currentjobid))).one()
    return accepted, job


def _provisioner(settings: Settings, engine: AsyncEngine, emit: Frozen) -> Provisioner:
    return Provisioner(
        PostgresOdsServer(settings.ods_server_url, clone_slots=1),
        emit,
        worker="frozen-worker",
        retry_attempts=1,
        claim=functools.partial(job_rows.claim, engine),
        fence=functools.partial(job_rows.fence, engine),
        scope=database_identity(settings.admin_database_url),
    )


async def test_a_rename_given_up_while_its_worker_was_frozen_is_not_carried_out(
    engine: AsyncEngine, settings: Settings, completed: Any
) -> None:
    accepted, job = await _rename(engine, settings, completed)
    frozen = Frozen(at=InstanceOperationStarted)  # its first step
    worker = asyncio.create_task(_provisioner(settings, engine, frozen).handle(job_command(job), 1))
    await asyncio.wait_for(frozen.frozen.wait(), 10)

    # The orphan sweep gives it up meanwhile (what it does after its recoveries).
    async with engine.begin() as conn:
        await conn.execute(select(db_instances.c.id).where(db_instances.c.id == completed.id))
        await fail_job(conn, job, "no heartbeat for over 4s; giving up")
    frozen.thawed.set()
    await asyncio.wait_for(worker, 20)

    assert pg.exists(completed.databasename)
    assert not pg.exists(accepted.pendingdatabasename)
    assert not any(isinstance(e, InstanceRenamed) for e in frozen.events)
    async with engine.connect() as conn:
        instance = (
            await conn.execute(select(db_instances).where(db_instances.c.id == completed.id))
        ).one()
        fenced = (await conn.execute(select(jobs).where(jobs.c.id == job.id))).one()
    assert (instance.status, instance.databasename) == ("Rename_Failed", completed.databasename)
    assert fenced.server_done_at is None


async def test_a_silent_workers_done_rename_is_recorded_as_the_fact_it_is(
    engine: AsyncEngine, settings: Settings, encryption_key: bytes, completed: Any
) -> None:
    accepted, job = await _rename(engine, settings, completed)
    frozen = Frozen(at=InstanceRenamed)  # done on the server, not yet reported
    worker = asyncio.create_task(_provisioner(settings, engine, frozen).handle(job_command(job), 1))
    await asyncio.wait_for(frozen.frozen.wait(), 10)
    assert pg.exists(accepted.pendingdatabasename) and not pg.exists(completed.databasename)

    applier = ConnectionStrings(encryption_key, lambda db: ods_connection_string(settings, db))
    for event in frozen.events:  # what reached the status service before it froze
        if not isinstance(event, InstanceRenamed):
            async with engine.begin() as conn:
                await apply_event(conn, event, str(uuid.uuid4()), applier)

    async def apply_fact(conn: Any, fact: Message) -> object:
        return await apply_event(conn, fact, f"fact:{fact.job_id}", applier)

    async with engine.begin() as conn:
        await conn.execute(update(jobs).where(jobs.c.id == job.id).values(heartbeat_at=None))
        handled = await recover_orphans(
            conn, threshold_seconds=0.001, max_recoveries=3, apply_fact=apply_fact
        )
    assert job.id in handled

    async with engine.connect() as conn:
        instance = (
            await conn.execute(select(db_instances).where(db_instances.c.id == completed.id))
        ).one()
        recorded = (await conn.execute(select(jobs).where(jobs.c.id == job.id))).one()
        dbo = await conn.scalar(
            select(ods_instances.c.connectionstring).where(
                ods_instances.c.odsinstanceid == instance.odsinstanceid
            )
        )
    assert (instance.status, instance.name) == ("Completed", accepted.pendingname)
    assert instance.databasename == accepted.pendingdatabasename
    assert recorded.status == "Completed" and recorded.recoveries == 0
    assert "Recorded from its command" in recorded.progress_message
    assert dbo is not None
    assert f"database={accepted.pendingdatabasename}" in crypto.decrypt(dbo, encryption_key)

    # The worker wakes and reports: the job has ended, so the report changes nothing.
    frozen.thawed.set()
    await asyncio.wait_for(worker, 20)
    late = next(e for e in frozen.events if isinstance(e, InstanceRenamed))
    async with engine.begin() as conn:
        assert await apply_event(conn, late, str(uuid.uuid4()), applier) == "stale"


async def test_the_sweep_cannot_give_up_a_job_inside_its_fence(
    engine: AsyncEngine, settings: Settings, completed: Any
) -> None:
    _, job = await _rename(engine, settings, completed)
    async with engine.begin() as conn:
        await conn.execute(
            update(jobs).where(jobs.c.id == job.id).values(status="Running", heartbeat_at=None)
        )
    async with job_rows.fence(engine, job.id) as live:
        assert live
        async with engine.begin() as conn:
            handled = await recover_orphans(conn, threshold_seconds=0.001, max_recoveries=0)
        assert job.id not in handled
    async with engine.connect() as conn:
        after = (await conn.execute(select(jobs).where(jobs.c.id == job.id))).one()
    assert after.status == "Running" and after.server_done_at is not None
    async with engine.begin() as conn:  # leave nothing running for later tests
        await conn.execute(update(jobs).where(jobs.c.id == job.id).values(status="Failed"))


def job_command(job: Any) -> InstanceRequested:
    return InstanceRequested.model_validate(job.command)


@pytest.mark.parametrize(
    ("server_step_done", "job_status", "retired"),
    [
        (False, "Failed", True),  # failed before its last server step: no database of its own
        (True, "Failed", False),  # its database may exist: the name stays taken
        (False, "Running", False),  # still running: not a failed create yet
    ],
)
async def test_a_failed_create_gives_its_name_up_only_if_it_never_made_a_database(
    engine: AsyncEngine,
    settings: Settings,
    db_prefix: str,
    server_step_done: bool,
    job_status: str,
    retired: bool,
) -> None:
    name = unique_name("Retire")
    database = db_prefix + name.replace(" ", "_")

    async def create() -> Any:
        async with engine.begin() as conn:
            return await accept_create(
                conn,
                name=name,
                template_key="Minimal",
                template_database=settings.templates["Minimal"],
                database_name=database,
                correlation_id="test",
                switch=Switch(),
                tenant=None,
            )

    first = await create()
    async with engine.begin() as conn:
        await conn.execute(
            update(db_instances)
            .where(db_instances.c.id == first.id)
            .values(status="Error", error="the clone failed")
        )
        await conn.execute(
            update(jobs)
            .where(jobs.c.id == first.currentjobid)
            .values(
                status=job_status,
                server_done_at=func.now() if server_step_done else None,
            )
        )
    try:
        if retired:
            second = await create()
            assert second.id != first.id and second.status == "Pending"
            # The one-statement create met the held name and wrote nothing; the two steps
            # then wrote one job and one command, for the instance they inserted.
            async with engine.connect() as conn:
                made = (
                    await conn.execute(
                        select(jobs.c.id, jobs.c.instance_id).where(
                            jobs.c.data["name"].as_string() == name
                        )
                    )
                ).all()
                commands = (
                    await conn.execute(
                        select(outbox.c.routing_key, outbox.c.body).where(
                            outbox.c.body["database_name"].as_string() == database
                        )
                    )
                ).all()
            assert sorted(made) == sorted(
                [(first.currentjobid, first.id), (second.currentjobid, second.id)]
            )
            assert sorted(
                (key, body["instance_id"], body["job_id"]) for key, body in commands
            ) == sorted(
                [
                    (str(first.id), first.id, str(first.currentjobid)),
                    (str(second.id), second.id, str(second.currentjobid)),
                ]
            )
        else:
            with pytest.raises(ConflictError, match="already exists"):
                await create()
        async with engine.connect() as conn:
            row = (
                await conn.execute(select(db_instances).where(db_instances.c.id == first.id))
            ).one()
        if retired:
            assert row.status == "Deleted"
            assert row.error.startswith("the clone failed; retired: a new create of")
        else:
            assert row.status == "Error" and row.error == "the clone failed"
    finally:
        async with engine.begin() as conn:
            await conn.execute(delete(outbox).where(outbox.c.sent_at.is_(None)))
            await conn.execute(
                update(db_instances).where(db_instances.c.name == name).values(status="Deleted")
            )
