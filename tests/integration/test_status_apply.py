"""The status service's transaction: invariant 3 (a redelivered event changes nothing), a stale
event changes nothing, and invariant 5 (dbinstances and dbo.odsinstances change together)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.messages import (
    InstanceCreated,
    InstanceCreateFailed,
    InstanceOperationProgress,
    InstanceOperationStarted,
    Message,
    Operation,
)
from services.admin_db import jobs as job_rows
from services.admin_db.accept import accept_create
from services.admin_db.tables import changes, db_instances, jobs, ods_instances
from services.rules import crypto
from services.rules.connection_strings import ods_connection_string
from services.rules.states import Claimed, Switch
from services.runtime.settings import Settings
from services.status.events import ConnectionStrings, apply_event
from tests.conftest import unique_name
from tests.support import pg
from tests.support.statements import sent_statements

pytestmark = pytest.mark.integration


async def _accepted(engine: AsyncEngine, db_prefix: str) -> tuple[int, uuid.UUID, str]:
    name = unique_name()
    db = db_prefix + name.replace(" ", "_")
    async with engine.begin() as conn:
        row = await accept_create(
            conn,
            name=name,
            template_key="Minimal",
            template_database="EdFi_Ods_Minimal_Template",
            database_name=db,
            correlation_id="test",
            switch=Switch(),
            tenant=None,
        )
    return row.id, row.currentjobid, db


async def _apply(engine: AsyncEngine, applier: ConnectionStrings, event: Message, mid: str) -> str:
    async with engine.begin() as conn:
        return await apply_event(conn, event, mid, applier)


async def _state(engine: AsyncEngine, instance_id: int, job_id: uuid.UUID) -> tuple[object, ...]:
    async with engine.connect() as conn:
        inst = (
            await conn.execute(select(db_instances).where(db_instances.c.id == instance_id))
        ).one()
        job = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).one()
        count = await conn.scalar(
            select(func.count()).select_from(ods_instances).where(ods_instances.c.name == inst.name)
        )
    return inst, job, count


@pytest.fixture
def applier(settings: Settings, encryption_key: bytes) -> ConnectionStrings:
    return ConnectionStrings(encryption_key, lambda db: ods_connection_string(settings, db))


async def test_a_create_goes_pending_running_completed_once(
    engine: AsyncEngine, applier: ConnectionStrings, db_prefix: str, encryption_key: bytes
) -> None:
    instance_id, job_id, db = await _accepted(engine, db_prefix)
    started = InstanceOperationStarted(
        job_id=job_id, instance_id=instance_id, operation=Operation.CREATE, attempt=1, worker="w"
    )
    assert await _apply(engine, applier, started, "m1") == "applied"
    assert await _apply(engine, applier, started, "m1") == "duplicate"
    inst, job, _ = await _state(engine, instance_id, job_id)
    assert (inst.status, job.status, job.attempts) == ("InProgress", "Running", 1)  # type: ignore[attr-defined]

    progress = InstanceOperationProgress(
        job_id=job_id,
        instance_id=instance_id,
        operation=Operation.CREATE,
        message="Cloning",
        percent=30,
    )
    await _apply(engine, applier, progress, "m2")
    _, job, _ = await _state(engine, instance_id, job_id)
    assert (job.progress_message, job.progress_percent) == ("Cloning", 30)  # type: ignore[attr-defined]

    created = InstanceCreated(job_id=job_id, instance_id=instance_id, database_name=db)
    assert await _apply(engine, applier, created, "m3") == "applied"
    # The provisioner may publish the outcome again after a redelivery (new message id).
    assert await _apply(engine, applier, created, "m4") == "stale"
    inst, job, count = await _state(engine, instance_id, job_id)
    assert (inst.status, job.status, count) == ("Completed", "Completed", 1)  # type: ignore[attr-defined]
    assert job.finished_at is not None  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        stored = await conn.scalar(
            select(ods_instances.c.connectionstring).where(
                ods_instances.c.odsinstanceid == inst.odsinstanceid  # type: ignore[attr-defined]
            )
        )
    assert isinstance(stored, str)
    assert f"database={db}" in crypto.decrypt(stored, encryption_key)


async def test_an_outcome_without_a_started_records_the_start_from_the_claim(
    engine: AsyncEngine, applier: ConnectionStrings, db_prefix: str
) -> None:
    """Issue 18: an operation that ends within the provisioner's progress delay sends its
    outcome alone. The job is then still Pending: the outcome records its start as Started
    would have (the claim's time, one attempt, the worker), then its end; the feed has one
    change of the job for it, already Completed."""
    instance_id, job_id, db = await _accepted(engine, db_prefix)
    assert await job_rows.claim(engine, job_id) is Claimed.CLAIMED
    _, claimed, _ = await _state(engine, instance_id, job_id)
    created = InstanceCreated(
        job_id=job_id, instance_id=instance_id, database_name=db, worker="host:42"
    )
    assert await _apply(engine, applier, created, str(uuid.uuid4())) == "applied"
    inst, job, count = await _state(engine, instance_id, job_id)
    assert (inst.status, job.status, count) == ("Completed", "Completed", 1)  # type: ignore[attr-defined]
    assert job.started_at == claimed.claimed_at  # type: ignore[attr-defined]
    assert job.started_at <= job.finished_at  # type: ignore[attr-defined]
    assert (job.attempts, job.worker) == (1, "host:42")  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        states = (
            await conn.execute(
                select(changes.c.body["status"].as_string())
                .where(changes.c.kind == "job", changes.c.entity_id == str(job_id))
                .order_by(changes.c.id)
            )
        ).scalars()
        assert list(states) == ["Pending", "Completed"]


async def test_an_outcome_after_a_started_keeps_the_start_it_recorded(
    engine: AsyncEngine, applier: ConnectionStrings, db_prefix: str
) -> None:
    instance_id, job_id, db = await _accepted(engine, db_prefix)
    started = InstanceOperationStarted(
        job_id=job_id, instance_id=instance_id, operation=Operation.CREATE, attempt=1, worker="a"
    )
    assert await _apply(engine, applier, started, str(uuid.uuid4())) == "applied"
    _, running, _ = await _state(engine, instance_id, job_id)
    created = InstanceCreated(job_id=job_id, instance_id=instance_id, database_name=db, worker="b")
    assert await _apply(engine, applier, created, str(uuid.uuid4())) == "applied"
    _, job, _ = await _state(engine, instance_id, job_id)
    assert job.status == "Completed"  # type: ignore[attr-defined]
    assert (job.started_at, job.attempts, job.worker) == (  # type: ignore[attr-defined]
        running.started_at,  # type: ignore[attr-defined]
        1,
        "a",
    )


async def test_a_late_failure_after_completion_changes_nothing(
    engine: AsyncEngine, applier: ConnectionStrings, db_prefix: str
) -> None:
    instance_id, job_id, db = await _accepted(engine, db_prefix)
    await _apply(
        engine,
        applier,
        InstanceCreated(job_id=job_id, instance_id=instance_id, database_name=db),
        "a",
    )
    late = InstanceCreateFailed(
        job_id=job_id, instance_id=instance_id, database_name=db, reason="late"
    )
    assert await _apply(engine, applier, late, "b") == "stale"
    inst, job, _ = await _state(engine, instance_id, job_id)
    assert (inst.status, job.status, inst.error) == ("Completed", "Completed", None)  # type: ignore[attr-defined]


async def test_a_failure_records_the_reason_on_instance_and_job(
    engine: AsyncEngine, applier: ConnectionStrings, db_prefix: str
) -> None:
    instance_id, job_id, db = await _accepted(engine, db_prefix)
    failed = InstanceCreateFailed(
        job_id=job_id, instance_id=instance_id, database_name=db, reason="template missing"
    )
    assert await _apply(engine, applier, failed, str(uuid.uuid4())) == "applied"
    inst, job, count = await _state(engine, instance_id, job_id)
    assert (inst.status, inst.error) == ("Error", "template missing")  # type: ignore[attr-defined]
    assert (job.status, job.error) == ("Failed", "template missing")  # type: ignore[attr-defined]
    assert count == 0


async def test_an_event_of_another_job_is_ignored(
    engine: AsyncEngine, applier: ConnectionStrings, db_prefix: str
) -> None:
    instance_id, job_id, db = await _accepted(engine, db_prefix)
    other = InstanceCreated(job_id=uuid.uuid4(), instance_id=instance_id, database_name=db)
    assert await _apply(engine, applier, other, str(uuid.uuid4())) == "stale"
    inst, _, _ = await _state(engine, instance_id, job_id)
    assert inst.status == "Pending"  # type: ignore[attr-defined]


async def test_on_postgresql_the_inbox_claim_and_both_locks_are_one_statement(
    engine: AsyncEngine, applier: ConnectionStrings, db_prefix: str, admin_database: str
) -> None:
    """Issue 18: one round trip, not three, before an event's writes; the rows stay locked
    (instance and job) until its transaction ends."""
    instance_id, job_id, _ = await _accepted(engine, db_prefix)
    started = InstanceOperationStarted(
        job_id=job_id, instance_id=instance_id, operation=Operation.CREATE, attempt=1, worker="w"
    )
    with sent_statements(engine) as sent:
        async with engine.begin() as conn:
            assert await apply_event(conn, started, "one-statement", applier) == "applied"
            # Both rows are held by this transaction until it ends.
            with psycopg.connect(pg.database_url(admin_database), autocommit=True) as other:
                for table, key in (("dbinstances", instance_id), ("jobs", job_id)):
                    with pytest.raises(psycopg.errors.LockNotAvailable):
                        other.execute(
                            f"SELECT 1 FROM edfi_im.{table} WHERE id = %s FOR UPDATE NOWAIT",
                            (key,),
                        )
    first = sent[0]
    assert "INSERT INTO edfi_im.inbox" in first and "FOR UPDATE OF" in first, first
    assert not any("edfi_im.inbox" in s for s in sent[1:]), sent
    assert not any("FOR UPDATE" in s for s in sent[1:]), sent
    # The job's and the instance's writes (Pending -> InProgress) travel as one statement.
    assert len(sent) == 2, sent
    assert "UPDATE edfi_im.jobs" in sent[1] and "UPDATE edfi_im.dbinstances" in sent[1], sent


async def test_on_postgresql_a_creates_outcome_adds_its_dbo_row_with_its_instance_in_one_statement(
    engine: AsyncEngine,
    applier: ConnectionStrings,
    db_prefix: str,
    admin_database: str,
    encryption_key: bytes,
) -> None:
    """Issue 18: a create's outcome adds the dbo.odsinstances row and settles the instance
    pointing at it in one statement (the INSERT a CTE of the UPDATE), then ends the job: one
    round trip fewer. The instance's change is still numbered before its job's."""
    instance_id, job_id, db = await _accepted(engine, db_prefix)
    created = InstanceCreated(job_id=job_id, instance_id=instance_id, database_name=db)
    with sent_statements(engine) as sent:
        assert await _apply(engine, applier, created, str(uuid.uuid4())) == "applied"
    # The inbox claim with both locks; the dbo row with the instance; the job.
    assert len(sent) == 3, sent
    assert "INSERT INTO dbo.odsinstances" in sent[1] and "UPDATE edfi_im.dbinstances" in sent[1]
    assert "UPDATE edfi_im.jobs" in sent[2]
    inst, job, count = await _state(engine, instance_id, job_id)
    assert (inst.status, job.status, count) == ("Completed", "Completed", 1)  # type: ignore[attr-defined]
    rows = pg.query(
        admin_database,
        "SELECT name, instancetype, connectionstring FROM dbo.odsinstances "
        "WHERE odsinstanceid = %s",
        (inst.odsinstanceid,),  # type: ignore[attr-defined]
    )
    assert [(r[0], r[1]) for r in rows] == [(inst.name, inst.instancetype)]  # type: ignore[attr-defined]
    assert f"database={db}" in crypto.decrypt(str(rows[0][2]), encryption_key)
    assert (inst.odsinstancename, inst.databasename) == (inst.name, db)  # type: ignore[attr-defined]
    order = pg.query(
        admin_database,
        "SELECT kind FROM edfi_im.changes WHERE entity_id IN (%s, %s) "
        "AND body->>'status' = 'Completed' ORDER BY id",
        (str(instance_id), str(job_id)),
    )
    assert [r[0] for r in order] == ["instance", "job"]
