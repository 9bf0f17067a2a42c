"""Jobs against the real admin database and ODS server: cancelling a job nobody claimed (and not
one a worker claimed), the maintenance jobs reconcile (drift reported, only safe repairs) and
prune (old history gone, what is still referenced kept)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.messages import MaintenanceRequested, MaintenanceTask, Operation
from services.admin_db import jobs as job_rows
from services.admin_db.accept import accept_create, accept_maintenance, accept_operation, cancel_job
from services.admin_db.tables import (
    db_instances,
    inbox,
    jobs,
    ods_instances,
    outbox,
    schedule_runs,
    schedules,
)
from services.rules import crypto
from services.rules.connection_strings import ods_connection_string
from services.rules.errors import ConflictError, NotFoundError, RefusedError
from services.rules.marker import Marker
from services.rules.states import Claimed, Switch
from services.runtime.settings import Settings
from services.scheduler.maintenance import MaintenanceWorker, prune, reconcile
from services.status.recovery import recover_orphans
from tests.conftest import unique_name
from tests.support import pg
from tests.support.statements import sent_statements

pytestmark = pytest.mark.integration


@pytest.fixture
async def quiet_outbox(engine: AsyncEngine) -> AsyncIterator[list[uuid.UUID]]:
    """Jobs a test accepts without a relay: their messages must not reach a later test's relay."""
    job_ids: list[uuid.UUID] = []
    yield job_ids
    async with engine.begin() as conn:
        for job_id in job_ids:
            await conn.execute(
                delete(outbox)
                .where(outbox.c.sent_at.is_(None))
                .where(outbox.c.body["job_id"].as_string() == str(job_id))
            )


async def _create(engine: AsyncEngine, settings: Settings) -> Any:
    return await _create_named(engine, settings, unique_name("Cancel"))


async def _job(engine: AsyncEngine, job_id: uuid.UUID) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(jobs).where(jobs.c.id == job_id))).one()


async def _instance(engine: AsyncEngine, instance_id: int) -> Any:
    async with engine.connect() as conn:
        return (
            await conn.execute(select(db_instances).where(db_instances.c.id == instance_id))
        ).one()


async def test_cancelling_a_pending_create_frees_the_name_and_the_worker_skips_it(
    engine: AsyncEngine, settings: Settings, quiet_outbox: list[uuid.UUID]
) -> None:
    row = await _create(engine, settings)
    quiet_outbox.append(row.currentjobid)
    async with engine.begin() as conn:
        cancelled = await cancel_job(conn, row.currentjobid)
    assert cancelled.status == "Cancelled" and cancelled.finished_at is not None
    instance = await _instance(engine, row.id)
    assert instance.status == "Deleted" and "cancelled" in instance.error
    assert await job_rows.claim(engine, row.currentjobid) is Claimed.CANCELLED
    # The name is free again.
    again = await _create_named(engine, settings, row.name)
    quiet_outbox.append(again.currentjobid)
    assert again.status == "Pending"


async def _create_named(engine: AsyncEngine, settings: Settings, name: str) -> Any:
    async with engine.begin() as conn:
        return await accept_create(
            conn,
            name=name,
            template_key="Minimal",
            template_database=settings.templates["Minimal"],
            database_name=settings.database_name_pattern.format(name=name.replace(" ", "_")),
            correlation_id="test",
            tenant=None,
            switch=Switch(),
        )


async def test_a_claimed_job_cannot_be_cancelled(
    engine: AsyncEngine, settings: Settings, quiet_outbox: list[uuid.UUID]
) -> None:
    row = await _create(engine, settings)
    quiet_outbox.append(row.currentjobid)
    assert await job_rows.claim(engine, row.currentjobid) is Claimed.CLAIMED
    async with engine.begin() as conn:
        with pytest.raises(ConflictError) as refused:
            await cancel_job(conn, row.currentjobid)
    assert "started" in refused.value.detail
    assert (await _job(engine, row.currentjobid)).status == "Pending"
    assert (await _instance(engine, row.id)).status == "Pending"
    # Mark it failed so it does not look in flight to later tests.
    async with engine.begin() as conn:
        await conn.execute(
            update(jobs).where(jobs.c.id == row.currentjobid).values(status="Failed")
        )
        await conn.execute(
            update(db_instances).where(db_instances.c.id == row.id).values(status="Error")
        )


async def test_cancelling_a_rename_puts_the_instance_back(
    engine: AsyncEngine, settings: Settings, quiet_outbox: list[uuid.UUID]
) -> None:
    row = await _create(engine, settings)
    quiet_outbox.append(row.currentjobid)
    async with engine.begin() as conn:
        await conn.execute(
            update(db_instances).where(db_instances.c.id == row.id).values(status="Completed")
        )
        await conn.execute(
            update(jobs).where(jobs.c.id == row.currentjobid).values(status="Completed")
        )
    new_name = unique_name("Renamed")
    async with engine.begin() as conn:
        renaming = await accept_operation(
            conn,
            row.id,
            Operation.RENAME,
            correlation_id="test",
            switch=Switch(),
            tenant=None,
            new_name=new_name,
            new_database_name=settings.database_name_pattern.format(name=new_name),
        )
    quiet_outbox.append(renaming.currentjobid)
    assert renaming.status == "Pending_Rename" and renaming.pendingname == new_name
    async with engine.begin() as conn:
        await cancel_job(conn, renaming.currentjobid)
    instance = await _instance(engine, row.id)
    assert (instance.status, instance.name, instance.pendingname) == ("Completed", row.name, None)
    async with engine.begin() as conn:
        with pytest.raises(RefusedError) as twice:
            await cancel_job(conn, renaming.currentjobid)
        with pytest.raises(RefusedError) as unknown:
            await cancel_job(conn, uuid.uuid4())
    assert (type(twice.value), type(unknown.value)) == (ConflictError, NotFoundError)


async def test_a_cancelled_maintenance_job_is_skipped_by_its_worker(
    engine: AsyncEngine, settings: Settings, encryption_key: bytes, quiet_outbox: list[uuid.UUID]
) -> None:
    async with engine.begin() as conn:
        job_id = await accept_maintenance(
            conn, MaintenanceTask.PRUNE, {"olderThanDays": 3650}, correlation_id="test", tenant=None
        )
    quiet_outbox.append(job_id)
    async with engine.begin() as conn:
        await cancel_job(conn, job_id)
    worker = MaintenanceWorker(engine, settings, encryption_key, "test-worker")
    await worker.handle(
        MaintenanceRequested(job_id=job_id, task=MaintenanceTask.PRUNE, parameters={})
    )
    job = await _job(engine, job_id)
    assert (job.status, job.started_at, job.result) == ("Cancelled", None, None)


async def test_reconcile_reports_drift_and_repairs_only_what_is_safe(
    engine: AsyncEngine,
    settings: Settings,
    encryption_key: bytes,
    db_prefix: str,
    quiet_outbox: list[uuid.UUID],
) -> None:
    # 1. A dbo.odsinstances row another tool made: safe to import.
    foreign_db = f"{db_prefix}Foreign_{uuid.uuid4().hex[:6]}"
    secret = crypto.encrypt(ods_connection_string(settings, foreign_db), encryption_key)
    async with engine.begin() as conn:
        ods_id = await conn.scalar(
            insert(ods_instances)
            .values(name=unique_name("Other tool"), connectionstring=secret)
            .returning(ods_instances.c.odsinstanceid)
        )
    # 2. A Completed instance whose database is gone.
    gone = await _create(engine, settings)
    quiet_outbox.append(gone.currentjobid)
    async with engine.begin() as conn:
        await conn.execute(
            update(db_instances).where(db_instances.c.id == gone.id).values(status="Completed")
        )
        await conn.execute(
            update(jobs).where(jobs.c.id == gone.currentjobid).values(status="Completed")
        )
    # 3. A database this system made for an instance that no longer uses it.
    orphan = f"{db_prefix}Orphan_{uuid.uuid4().hex[:6]}"
    pg.create(orphan, Marker(999_999, uuid.uuid4()).render())
    # 4. Not a finding: another tenant's database on a shared server (its marker names it).
    theirs = f"{db_prefix}Theirs_{uuid.uuid4().hex[:6]}"
    pg.create(theirs, Marker(999_998, uuid.uuid4(), "another-tenant").render())
    # 4b. Not a finding either: another deployment's (another admin database's) database on the
    # same server, with an instance id this deployment also has.
    other_deployment = f"{db_prefix}OtherDeployment_{uuid.uuid4().hex[:6]}"
    pg.create(other_deployment, Marker(999_999, uuid.uuid4(), None, str(uuid.uuid4())).render())
    # 5. A database renamed late (the records still name the old one): marked, unrecorded. Its
    # name is nothing like the pattern: the marker, not the name, makes it this system's.
    renamed = await _create(engine, settings)
    quiet_outbox.append(renamed.currentjobid)
    late = f"late_rename_{uuid.uuid4().hex[:6]}"
    pg.create(late, Marker(renamed.id, uuid.uuid4()).render())
    # 6. A create recorded as failed (Error) whose database exists, marked as the instance's.
    failed = await _create(engine, settings)
    quiet_outbox.append(failed.currentjobid)
    pg.create(failed.databasename, Marker(failed.id, failed.currentjobid).render())
    async with engine.begin() as conn:
        await conn.execute(
            update(db_instances)
            .where(db_instances.c.id.in_([failed.id, renamed.id]))
            .values(status=case((db_instances.c.id == failed.id, "Error"), else_="Completed"))
        )
        await conn.execute(
            update(jobs)
            .where(jobs.c.id.in_([failed.currentjobid, renamed.currentjobid]))
            .values(status="Failed")
        )
    # 7. A dbo row that points at another server: never imported, said so.
    elsewhere = ods_connection_string(settings, foreign_db).replace(
        "host=127.0.0.1", "host=elsewhere.example.org"
    )
    async with engine.begin() as conn:
        foreign_id = await conn.scalar(
            insert(ods_instances)
            .values(
                name=unique_name("Elsewhere"),
                connectionstring=crypto.encrypt(elsewhere, encryption_key),
            )
            .returning(ods_instances.c.odsinstanceid)
        )
    try:
        async with engine.begin() as conn:
            job_id = await accept_maintenance(
                conn,
                MaintenanceTask.RECONCILE,
                {"repair": True},
                correlation_id="test",
                tenant=None,
            )
        quiet_outbox.append(job_id)
        worker = MaintenanceWorker(engine, settings, encryption_key, "test-worker")
        await worker.handle(
            MaintenanceRequested(
                job_id=job_id, task=MaintenanceTask.RECONCILE, parameters={"repair": True}
            )
        )
        job = await _job(engine, job_id)
        assert job.status == "Completed" and job.progress_percent == 100
        findings = job.result["findings"]

        def kinds(**match: Any) -> list[dict[str, Any]]:
            return [f for f in findings if all(f.get(k) == v for k, v in match.items())]

        [imported] = kinds(kind="unmanagedOdsInstance", odsInstanceId=ods_id)
        assert imported["repaired"] is True
        [missing] = kinds(kind="missingDatabase", instanceId=gone.id)
        assert missing["repaired"] is False
        [orphaned] = kinds(kind="orphanDatabase", database=orphan)
        assert orphaned["repaired"] is False and "kept" in orphaned["detail"]
        assert pg.exists(orphan)  # reported, never dropped
        assert theirs not in json.dumps(findings)
        assert other_deployment not in json.dumps(findings)
        [unrecorded] = kinds(kind="unrecordedDatabase", database=late)
        assert (
            unrecorded["instanceId"] == renamed.id
            and renamed.databasename in (unrecorded["detail"])
        )
        [of_failed] = kinds(kind="databaseOfFailedInstance", database=failed.databasename)
        assert of_failed["instanceId"] == failed.id and "delete the instance" in of_failed["detail"]
        [foreign] = kinds(kind="foreignOdsInstance", odsInstanceId=foreign_id)
        assert foreign["repaired"] is False and "elsewhere.example.org" in foreign["detail"]
        async with engine.connect() as conn:
            live = await conn.scalar(
                select(func.count())
                .select_from(db_instances)
                .where(db_instances.c.odsinstanceid == ods_id)
            )
        assert live == 1  # the import happened

        # Without repair, nothing is changed.
        report = await reconcile(engine, settings, encryption_key, repair=False)
        assert report["repaired"] == 0
        assert all(f["repaired"] is False for f in report["findings"])
        assert kinds(kind="missingDatabase", instanceId=gone.id)
    finally:
        for database in (orphan, theirs, other_deployment, late, failed.databasename):
            pg.drop(database)
        async with engine.begin() as conn:
            await conn.execute(
                update(db_instances)
                .where(db_instances.c.id.in_([gone.id, renamed.id, failed.id]))
                .values(status="Deleted")
            )
            await conn.execute(
                delete(ods_instances).where(ods_instances.c.odsinstanceid == foreign_id)
            )


async def test_prune_deletes_old_history_and_keeps_what_is_referenced(
    engine: AsyncEngine, settings: Settings
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=400)
    old_job, current_job, recent_job = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    schedule_id = uuid.uuid4()
    async with engine.begin() as conn:
        for job_id, finished in (
            (old_job, long_ago),
            (current_job, long_ago),
            (recent_job, datetime.now(UTC)),
        ):
            await conn.execute(
                insert(jobs).values(
                    id=job_id,
                    type="prune",
                    status="Completed",
                    attempts=1,
                    created_at=long_ago,
                    finished_at=finished,
                    data={},
                    recoveries=0,
                )
            )
        instance_id = await conn.scalar(
            insert(db_instances)
            .values(
                name=unique_name("Pruned"),
                status="Deleted",
                databasetemplate="Minimal",
                currentjobid=current_job,
                lastrefreshed=func.now(),
                createdat=func.now(),
                imported=False,
            )
            .returning(db_instances.c.id)
        )
        await conn.execute(
            insert(schedules).values(
                id=schedule_id,
                name=f"prune test {schedule_id}",
                job_type="prune",
                parameters={},
                trigger={"type": "once", "runAt": "2020-01-01T00:00:00Z"},
                misfire_policy="fireOnceNow",
                allow_concurrent=False,
                state="Complete",
                fire_count=2,
                created_at=long_ago,
                updated_at=long_ago,
            )
        )
        await conn.execute(
            insert(schedule_runs),
            [
                {
                    "schedule_id": schedule_id,
                    "scheduled_fire_time": long_ago - timedelta(seconds=k),
                    "actual_fire_time": long_ago,
                    "outcome": "Fired",
                }
                for k in range(2)
            ],
        )
        old_inbox = f"prune-test-{uuid.uuid4()}"
        await conn.execute(
            insert(inbox).values(consumer="status", message_id=old_inbox, processed_at=long_ago)
        )
        old_outbox = uuid.uuid4()
        await conn.execute(
            insert(outbox).values(
                message_id=old_outbox,
                exchange="x",
                routing_key="k",
                message_type="t",
                body={},
                created_at=long_ago,
                sent_at=long_ago,
                attempts=1,
            )
        )
    try:
        result = await prune(engine, older_than_days=365)
        assert result["deleted"]["jobs"] >= 1
        assert result["deleted"]["scheduleRuns"] >= 2
        assert result["deleted"]["inbox"] >= 1 and result["deleted"]["outbox"] >= 1
        async with engine.connect() as conn:
            left = {r.id for r in (await conn.execute(select(jobs.c.id))).all()}
            runs = await conn.scalar(
                select(func.count())
                .select_from(schedule_runs)
                .where(schedule_runs.c.schedule_id == schedule_id)
            )
            inbox_left = await conn.scalar(
                select(func.count()).select_from(inbox).where(inbox.c.message_id == old_inbox)
            )
            outbox_left = await conn.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.message_id == old_outbox)
            )
        assert old_job not in left
        assert current_job in left  # still an instance's current job
        assert recent_job in left  # younger than the cutoff
        assert (runs, inbox_left, outbox_left) == (0, 0, 0)
    finally:
        async with engine.begin() as conn:
            await conn.execute(delete(schedules).where(schedules.c.id == schedule_id))
            await conn.execute(
                update(db_instances)
                .where(db_instances.c.id == instance_id)
                .values(currentjobid=None)
            )


async def test_an_orphaned_maintenance_job_is_sent_again_then_failed(
    engine: AsyncEngine, quiet_outbox: list[uuid.UUID]
) -> None:
    async with engine.begin() as conn:
        job_id = await accept_maintenance(
            conn, MaintenanceTask.RECONCILE, {"repair": False}, correlation_id="test", tenant=None
        )
    quiet_outbox.append(job_id)
    stale = datetime.now(UTC) - timedelta(hours=2)

    async def stall() -> None:
        async with engine.begin() as conn:
            await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(status="Running", worker="scheduler:gone:1", heartbeat_at=stale)
            )

    async def messages() -> int:
        async with engine.connect() as conn:
            return int(
                await conn.scalar(
                    select(func.count())
                    .select_from(outbox)
                    .where(outbox.c.body["job_id"].as_string() == str(job_id))
                )
                or 0
            )

    await stall()
    async with engine.begin() as conn:
        handled = await recover_orphans(conn, threshold_seconds=3600, max_recoveries=1)
    assert job_id in handled
    job = await _job(engine, job_id)
    assert (job.status, job.recoveries) == ("Running", 1) and "Re-driven" in job.progress_message
    assert await messages() == 2  # the first command and the re-drive

    await stall()
    async with engine.begin() as conn:
        await recover_orphans(conn, threshold_seconds=3600, max_recoveries=1)
    job = await _job(engine, job_id)
    assert job.status == "Failed" and "giving up" in job.error
    assert await messages() == 2


async def test_a_job_claimed_but_never_started_is_swept_like_a_running_one(
    engine: AsyncEngine, settings: Settings, quiet_outbox: list[uuid.UUID]
) -> None:
    """A worker sends Started only once the progress delay has passed (issue 18): one that died
    or froze within it left its job Pending and claimed. The orphan sweep takes such a job as
    running since its claim: re-driven once silent past the threshold, not before."""
    old, recent = await _create(engine, settings), await _create(engine, settings)
    quiet_outbox.extend([old.currentjobid, recent.currentjobid])
    for row in (old, recent):
        assert await job_rows.claim(engine, row.currentjobid) is Claimed.CLAIMED
    async with engine.begin() as conn:
        await conn.execute(
            update(jobs)
            .where(jobs.c.id == old.currentjobid)
            .values(claimed_at=datetime.now(UTC) - timedelta(hours=2))
        )
        handled = await recover_orphans(conn, threshold_seconds=3600, max_recoveries=1)
    assert old.currentjobid in handled and recent.currentjobid not in handled
    swept = await _job(engine, old.currentjobid)
    assert swept.recoveries == 1 and "Re-driven" in swept.progress_message
    async with engine.connect() as conn:
        sent = await conn.scalar(
            select(func.count())
            .select_from(outbox)
            .where(outbox.c.body["job_id"].as_string() == str(old.currentjobid))
        )
    assert sent == 2  # the first command and the re-drive
    assert (await _job(engine, recent.currentjobid)).recoveries == 0
    await _end(engine, old)
    await _end(engine, recent)


async def test_on_postgresql_a_claim_is_one_statement_on_its_own_and_stamps_once(
    engine: AsyncEngine, settings: Settings, quiet_outbox: list[uuid.UUID]
) -> None:
    """Issue 18: a claim was BEGIN, two reads, the stamp and COMMIT (five round trips on every
    create's path); now one statement in autocommit, answering as before."""
    row = await _create(engine, settings)
    quiet_outbox.append(row.currentjobid)
    with sent_statements(engine, transactions=True) as sent:
        assert await job_rows.claim(engine, row.currentjobid) is Claimed.CLAIMED
    assert len(sent) == 1, sent
    assert "FOR UPDATE OF dbinstances, jobs" in sent[0] and "UPDATE edfi_im.jobs" in sent[0]
    stamped = (await _job(engine, row.currentjobid)).claimed_at
    assert stamped is not None
    # A redelivered command claims again (its worker carries on) without a new stamp, and is
    # told an earlier attempt had claimed it (it announces itself at once: issue 18).
    assert await job_rows.claim(engine, row.currentjobid) is Claimed.RESUMED
    assert (await _job(engine, row.currentjobid)).claimed_at == stamped
    # Claimed, it can no longer be cancelled.
    async with engine.begin() as conn:
        with pytest.raises(ConflictError):
            await cancel_job(conn, row.currentjobid)
    await _end(engine, row)


async def test_a_claim_that_waited_for_the_jobs_lock_answers_from_what_was_committed(
    engine: AsyncEngine, settings: Settings, quiet_outbox: list[uuid.UUID], admin_database: str
) -> None:
    """A claim waiting on the job's row (a cancel in its transaction) answers from the row as
    that transaction left it: cancelled, not stamped."""
    row = await _create(engine, settings)
    quiet_outbox.append(row.currentjobid)
    with psycopg.connect(pg.database_url(admin_database)) as other:
        other.execute("SELECT 1 FROM edfi_im.jobs WHERE id = %s FOR UPDATE", (row.currentjobid,))
        claiming = asyncio.create_task(job_rows.claim(engine, row.currentjobid))
        await asyncio.sleep(0.3)
        assert not claiming.done()  # it waits for the lock
        other.execute(
            "UPDATE edfi_im.jobs SET status = 'Cancelled', finished_at = now() WHERE id = %s",
            (row.currentjobid,),
        )
        other.commit()
    assert await claiming is Claimed.CANCELLED
    assert (await _job(engine, row.currentjobid)).claimed_at is None
    await _end(engine, row)


async def test_a_claim_skips_a_job_its_instance_has_moved_on_from_or_that_ended(
    engine: AsyncEngine, settings: Settings, quiet_outbox: list[uuid.UUID]
) -> None:
    moved = await _create(engine, settings)
    ended = await _create(engine, settings)
    quiet_outbox.extend([moved.currentjobid, ended.currentjobid])
    async with engine.begin() as conn:
        await conn.execute(
            update(db_instances).where(db_instances.c.id == moved.id).values(currentjobid=None)
        )
        await conn.execute(
            update(jobs).where(jobs.c.id == ended.currentjobid).values(status="Failed")
        )
    assert await job_rows.claim(engine, moved.currentjobid) is Claimed.ENDED
    assert await job_rows.claim(engine, ended.currentjobid) is Claimed.ENDED
    for row in (moved, ended):
        assert (await _job(engine, row.currentjobid)).claimed_at is None
    # A command sent by hand (no job recorded) is worked on, as before.
    assert await job_rows.claim(engine, uuid.uuid4()) is Claimed.CLAIMED
    await _end(engine, moved)
    await _end(engine, ended)


async def test_on_postgresql_a_fence_locks_its_job_and_reads_its_instance_in_one_statement(
    engine: AsyncEngine, settings: Settings, quiet_outbox: list[uuid.UUID], admin_database: str
) -> None:
    """Issue 18: the fence's entry is one statement (the job locked, its instance's current job
    read, its step recorded) and its exit only the COMMIT: no statement between the step and the
    COMMIT (one round trip fewer after the clone)."""
    row = await _create(engine, settings)
    quiet_outbox.append(row.currentjobid)
    with sent_statements(engine, transactions=True) as sent:
        async with job_rows.fence(engine, row.currentjobid) as live:
            assert live
            reads = [s for s in sent if s not in ("BEGIN", "COMMIT")]
            assert len(reads) == 1 and reads[0].lstrip().startswith("UPDATE edfi_im.jobs"), sent
            assert "RETURNING" in reads[0]
            # The job stays locked inside the fence.
            with (
                psycopg.connect(pg.database_url(admin_database), autocommit=True) as other,
                pytest.raises(psycopg.errors.LockNotAvailable),
            ):
                other.execute(
                    "SELECT 1 FROM edfi_im.jobs WHERE id = %s FOR UPDATE NOWAIT",
                    (row.currentjobid,),
                )
            entered = len(sent)
    assert sent[entered:] == ["COMMIT"], sent
    assert (await _job(engine, row.currentjobid)).server_done_at is not None
    # A job its instance has moved on from is fenced out.
    async with engine.begin() as conn:
        await conn.execute(
            update(db_instances).where(db_instances.c.id == row.id).values(currentjobid=None)
        )
    async with job_rows.fence(engine, row.currentjobid) as live:
        assert not live
    await _end(engine, row)


async def test_a_fences_step_is_recorded_only_when_the_step_was_taken(
    engine: AsyncEngine, settings: Settings, quiet_outbox: list[uuid.UUID]
) -> None:
    """The step's record is kept only if nothing was raised inside the fence, and never made
    for a job that may no longer act (fenced out, its step not taken)."""
    failed_step = await _create(engine, settings)
    quiet_outbox.append(failed_step.currentjobid)

    async def step_that_fails() -> None:
        async with job_rows.fence(engine, failed_step.currentjobid) as live:
            assert live
            raise RuntimeError("the rename failed")

    with pytest.raises(RuntimeError):
        await step_that_fails()
    assert (await _job(engine, failed_step.currentjobid)).server_done_at is None

    moved_on = await _create(engine, settings)
    quiet_outbox.append(moved_on.currentjobid)
    async with engine.begin() as conn:
        await conn.execute(
            update(db_instances).where(db_instances.c.id == moved_on.id).values(currentjobid=None)
        )
    async with job_rows.fence(engine, moved_on.currentjobid) as live:
        assert not live
    assert (await _job(engine, moved_on.currentjobid)).server_done_at is None

    ended = await _create(engine, settings)
    quiet_outbox.append(ended.currentjobid)
    await _end(engine, ended)
    async with job_rows.fence(engine, ended.currentjobid) as live:
        assert not live
    assert (await _job(engine, ended.currentjobid)).server_done_at is None

    done = await _create(engine, settings)
    quiet_outbox.append(done.currentjobid)
    async with job_rows.fence(engine, done.currentjobid) as live:
        assert live
    assert (await _job(engine, done.currentjobid)).server_done_at is not None
    for row in (failed_step, moved_on, done):
        await _end(engine, row)


async def _end(engine: AsyncEngine, row: Any) -> None:
    """The job failed, the instance in Error: nothing in flight left for later tests."""
    async with engine.begin() as conn:
        await conn.execute(
            update(jobs)
            .where(jobs.c.id == row.currentjobid)
            .where(jobs.c.status.not_in(job_rows.TERMINAL))
            .values(status="Failed")
        )
        await conn.execute(
            update(db_instances).where(db_instances.c.id == row.id).values(status="Error")
        )
