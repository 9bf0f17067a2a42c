"""Maintenance jobs: `reconcile` (report drift between edfi_im.dbinstances, dbo.odsinstances and
the databases on the ODS server; repair only what is safe) and `prune` (delete old history)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.messages import MaintenanceRequested, MaintenanceTask
from services.admin_db import inbox, outbox
from services.admin_db import jobs as job_rows
from services.admin_db import schedules as schedule_rows
from services.admin_db.dbo_import import Importable, import_ods_instances
from services.admin_db.deployment import deployment_id
from services.admin_db.dialect import ago
from services.admin_db.tables import db_instances, jobs, ods_instances, schedules
from services.rules.connection_strings import database_of, place_of
from services.rules.marker import STAGING_PREFIX
from services.rules.parameters import whole
from services.rules.states import TERMINAL_JOB_STATUSES, InstanceStatus, JobStatus
from services.runtime.logging import get_logger
from services.runtime.metrics import job_finished
from services.runtime.ods_servers import server_databases
from services.runtime.settings import Settings

log = get_logger(__name__)

# Statuses in which an instance's database should exist on the ODS server.
HAS_DATABASE = {
    InstanceStatus.COMPLETED.value,
    InstanceStatus.RENAME_FAILED.value,
    InstanceStatus.DELETE_FAILED.value,
}
TERMINAL = [s.value for s in TERMINAL_JOB_STATUSES]


def _staging_job(name: str) -> uuid.UUID | None:
    """The job a staging database (`edfi_im_staging_<job>`) was cloned for."""
    if not name.lower().startswith(STAGING_PREFIX):
        return None
    try:
        return uuid.UUID(hex=name[len(STAGING_PREFIX) :])
    except ValueError:
        return None


def _finding(kind: str, detail: str, **about: Any) -> dict[str, Any]:
    return {"kind": kind, "detail": detail, "repaired": False, **about}


async def reconcile(
    engine: AsyncEngine, settings: Settings, key: bytes, repair: bool
) -> dict[str, Any]:
    """Compare the three views of the instances; the report lists each difference."""
    databases = await server_databases(settings)
    ours_id = await deployment_id(engine)
    lowered = {name.lower(): name for name in databases}
    staging = {name: job for name in databases if (job := _staging_job(name)) is not None}
    async with engine.connect() as conn:
        instances = (await conn.execute(select(db_instances))).all()
        dbo = {r.odsinstanceid: r for r in (await conn.execute(select(ods_instances))).all()}
        # Only the jobs staging databases name: this admin database's own leftovers.
        ours = set(
            (await conn.scalars(select(jobs.c.id).where(jobs.c.id.in_(staging.values())))).all()
            if staging
            else ()
        )
    findings: list[dict[str, Any]] = []
    live = [i for i in instances if i.status != InstanceStatus.DELETED.value]
    managed_ods = {i.odsinstanceid for i in live if i.odsinstanceid is not None}

    for inst in live:
        about = {"instanceId": inst.id, "name": inst.name}
        database = inst.databasename
        if inst.status in HAS_DATABASE and database and database.lower() not in lowered:
            findings.append(
                _finding(
                    "missingDatabase",
                    f"instance {inst.id} is {inst.status} but its database {database!r} is not "
                    "on the ODS server",
                    database=database,
                    **about,
                )
            )
        if inst.odsinstanceid is None:
            continue
        row = dbo.get(inst.odsinstanceid)
        if row is None:
            findings.append(
                _finding(
                    "missingOdsInstance",
                    f"instance {inst.id} points at dbo.odsinstances {inst.odsinstanceid}, "
                    "which no longer exists",
                    odsInstanceId=inst.odsinstanceid,
                    **about,
                )
            )
            continue
        if inst.status == InstanceStatus.COMPLETED.value and row.name != inst.name:
            findings.append(
                _finding(
                    "nameMismatch",
                    f"dbo.odsinstances {row.odsinstanceid} is named {row.name!r}, the instance "
                    f"{inst.name!r}",
                    odsInstanceId=row.odsinstanceid,
                    **about,
                )
            )
        named, problem = database_of(row.connectionstring, key)
        if problem is None and named and database and named.lower() != database.lower():
            findings.append(
                _finding(
                    "connectionStringMismatch",
                    f"dbo.odsinstances {row.odsinstanceid}'s connection string names {named!r}, "
                    f"the instance's database is {database!r}",
                    odsInstanceId=row.odsinstanceid,
                    **about,
                )
            )
    unmanaged = [r for ods_id, r in dbo.items() if ods_id not in managed_ods]
    rules = Importable(settings)
    for row in unmanaged:
        place, _ = place_of(row.connectionstring, key)
        refusal = rules.refusal(place) if place is not None else None
        findings.append(
            _finding(
                "foreignOdsInstance",
                f"dbo.odsinstances {row.odsinstanceid} ({row.name!r}) is not imported: {refusal}",
                odsInstanceId=row.odsinstanceid,
            )
            if refusal
            else _finding(
                "unmanagedOdsInstance",
                f"dbo.odsinstances {row.odsinstanceid} ({row.name!r}) has no instance here",
                odsInstanceId=row.odsinstanceid,
            )
        )
    by_id = {i.id: i for i in instances}
    for name, marker in sorted(databases.items()):
        low = name.lower()
        if low.startswith(STAGING_PREFIX):
            job_id = staging.get(name)
            if job_id in ours:
                findings.append(
                    _finding(
                        "leftoverStagingDatabase",
                        f"{name!r} is a clone left by job {job_id}; it was kept, not dropped",
                        database=name,
                        jobId=str(job_id),
                    )
                )
            continue
        if marker is None or marker.tenant != settings.tenant or not marker.of_deployment(ours_id):
            continue  # not this system's, or another tenant's or deployment's on a shared server
        # Marked as this system's: the records must say the same.
        owner = by_id.get(marker.instance_id)
        if owner is None or owner.status == InstanceStatus.DELETED.value:
            findings.append(
                _finding(
                    "orphanDatabase",
                    f"{name!r} was created by this system for instance {marker.instance_id}, "
                    "which no live instance is now; it was kept, not dropped",
                    database=name,
                    instanceId=marker.instance_id,
                )
            )
        elif (owner.databasename or "").lower() != low:
            findings.append(
                _finding(
                    "unrecordedDatabase",
                    f"{name!r} is marked as instance {owner.id}'s, whose records name "
                    f"{owner.databasename!r} ({owner.status}); it was kept as it is",
                    database=name,
                    instanceId=owner.id,
                )
            )
        elif owner.status == InstanceStatus.ERROR.value:
            findings.append(
                _finding(
                    "databaseOfFailedInstance",
                    f"{name!r} exists, marked as instance {owner.id}'s, whose create is recorded "
                    "as failed (Error); delete the instance to drop it",
                    database=name,
                    instanceId=owner.id,
                )
            )
    repaired = 0
    if repair and any(f["kind"] == "unmanagedOdsInstance" for f in findings):
        # The one safe repair: import rows other Ed-Fi tools made (it only adds rows here).
        imported = set(await import_ods_instances(engine, key, settings))
        for f in findings:
            if f["kind"] == "unmanagedOdsInstance" and f["odsInstanceId"] in imported:
                f["repaired"] = True
                repaired += 1
    counts = dict(Counter(f["kind"] for f in findings))
    return {
        "checked": {
            "instances": len(live),
            "odsInstances": len(dbo),
            "databases": len(databases),
        },
        "drift": len(findings),
        "repaired": repaired,
        "counts": counts,
        "findings": findings,
    }


async def prune(engine: AsyncEngine, older_than_days: float) -> dict[str, Any]:
    """Delete history older than the cutoff: finished jobs (except an instance's or a schedule's
    latest), schedule runs, inbox rows and sent outbox rows."""
    cutoff = ago(older_than_days * 86_400)
    async with engine.begin() as conn:
        kept = select(db_instances.c.currentjobid).where(db_instances.c.currentjobid.is_not(None))
        latest = select(schedules.c.last_job_id).where(schedules.c.last_job_id.is_not(None))
        deleted = {
            "jobs": await job_rows.prune(conn, cutoff, [kept, latest]),
            "scheduleRuns": await schedule_rows.prune_runs(conn, cutoff),
            "inbox": await inbox.prune(conn, cutoff),
            "outbox": await outbox.prune(conn, cutoff),
        }
    return {"olderThanDays": whole(older_than_days), "deleted": deleted}


class MaintenanceWorker:
    """Runs one MaintenanceRequested: claims its job (skipping a cancelled or finished one),
    runs the task, records the result. A redelivered command runs the task again: both tasks
    are safe to repeat."""

    def __init__(self, engine: AsyncEngine, settings: Settings, key: bytes, worker: str) -> None:
        self._engine = engine
        self._settings = settings
        self._key = key
        self._worker = worker

    async def _claim(self, job_id: uuid.UUID) -> bool:
        why_not = await job_rows.claim_maintenance(self._engine, job_id, self._worker)
        if why_not is not None:
            log.info("maintenance job skipped", reason=why_not)
        return why_not is None

    async def _finish(self, job_id: uuid.UUID, **values: Any) -> None:
        done = await job_rows.finish_maintenance(self._engine, job_id, **values)
        if done is not None:
            job_finished(done.type, done.status, done.created_at, done.finished_at)

    async def handle(self, cmd: MaintenanceRequested) -> None:
        if not await self._claim(cmd.job_id):
            return
        tasks: dict[MaintenanceTask, Callable[[], Awaitable[dict[str, Any]]]] = {
            MaintenanceTask.RECONCILE: lambda: reconcile(
                self._engine,
                self._settings,
                self._key,
                bool(cmd.parameters.get("repair", True)),
            ),
            MaintenanceTask.PRUNE: lambda: prune(
                self._engine,
                float(cmd.parameters.get("olderThanDays") or self._settings.retention_days),
            ),
        }
        try:
            result = await tasks[cmd.task]()
        except Exception as exc:
            log.exception("maintenance job failed", task=cmd.task.value)
            reason = f"{cmd.task.value} failed: {exc!r}"[:2000]
            await self._finish(
                cmd.job_id,
                status=JobStatus.FAILED.value,
                error=reason,
                progress_message=reason[:500],
            )
            return
        summary = (
            f"{result['drift']} difference(s) found, {result['repaired']} repaired"
            if cmd.task is MaintenanceTask.RECONCILE
            else ", ".join(f"{n} {what}" for what, n in result["deleted"].items()) + " deleted"
        )
        await self._finish(
            cmd.job_id,
            status=JobStatus.COMPLETED.value,
            result=result,
            progress_message=summary,
            progress_percent=100,
        )
        log.info("maintenance job completed", task=cmd.task.value, summary=summary)
