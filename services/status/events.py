"""Applying the provisioner's events to the admin database: one transaction per event, with the
inbox row that makes a redelivered event a no-op and the job check that makes a stale one a
no-op. The transitions themselves are the admin database layer's (services/admin_db)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, Literal

from sqlalchemy import Row, bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts.messages import (
    OUTCOMES,
    InstanceCreated,
    InstanceDeleted,
    InstanceOperationProgress,
    InstanceOperationRetrying,
    InstanceOperationStarted,
    InstanceRenamed,
    Message,
    OperationFailed,
    message_type,
)
from services.admin_db import inbox, instances, jobs
from services.admin_db.dialect import ENGINE_SPECIFIC
from services.admin_db.tables import db_instances
from services.admin_db.tables import jobs as jobs_table
from services.rules import crypto
from services.rules.states import InstanceStatus, is_terminal, on_started, outcome
from services.runtime.logging import get_logger

log = get_logger(__name__)

CONSUMER = "status"
Outcome = Literal["applied", "duplicate", "stale"]


class ConnectionStrings:
    """The connection strings written to dbo, as the ODS/API reads them: built from this
    service's own configuration (no secret crosses the broker) and encrypted."""

    def __init__(self, encryption_key: bytes, build: Callable[[str], str]) -> None:
        self._key = encryption_key
        self._build = build

    def encrypted(self, database: str) -> str:
        return crypto.encrypt(self._build(database), self._key)

    def own_test(self, old_database: str, stored: str | None) -> Callable[[str | None], bool]:
        """Whether an encrypted connection string is the instance's own: the one it had
        (`stored`, as dbo holds it) or the one this service would build for its database."""
        own = {self._build(old_database)}
        if stored:
            with contextlib.suppress(crypto.DecryptionError):
                own.add(crypto.decrypt(stored, self._key))

        def was_own(value: str | None) -> bool:
            if not value:
                return False
            try:
                return crypto.decrypt(value, self._key) in own
            except crypto.DecryptionError:
                return False  # not ours to read: someone else's replica

        return was_own


async def apply_event(
    conn: AsyncConnection,
    event: Message,
    message_id: str,
    strings: ConnectionStrings,
    finished: Callable[[Row[Any]], None] | None = None,
) -> Outcome:
    """Apply one event in the caller's transaction. `finished` is given the job's type, status
    and times when an outcome ends it (the caller counts it once the transaction commits)."""
    fresh, instance, job = await _claim_and_lock(conn, event, message_id)
    if not fresh:
        return "duplicate"
    if instance is None or job is None:
        log.warning("event for an unknown instance or job; ignored")
        return "stale"
    if is_terminal(job.status) or instance.currentjobid != job.id:
        log.info("stale event ignored", job_status=job.status, event_type=type(event).__name__)
        return "stale"
    if isinstance(event, InstanceOperationStarted):
        starts = on_started(InstanceStatus(instance.status)) != instance.status
        # On PostgreSQL both writes are one statement (the instance's a CTE of the job's):
        # PostgreSQL does not order a CTE's write against its statement's, and no reader
        # depends on the order of these two changes (Running, InProgress).
        along = instances.started_along(instance.id) if starts and _one_statement(conn) else None
        await jobs.mark_running(
            conn, job.id, worker=event.worker, attempt=event.attempt, along=along
        )
        if starts and along is None:
            await instances.mark_started(conn, instance.id)
        log.info("job running", attempt=event.attempt, worker=event.worker)
    elif isinstance(event, InstanceOperationProgress):
        await jobs.report_progress(conn, job.id, event.message, event.percent)
    elif isinstance(event, InstanceOperationRetrying):
        # The job stays Running (or Pending); it shows the tries and the last error.
        await jobs.record_retry(
            conn,
            job.id,
            event.error,
            f"Try {event.try_number} of {event.max_tries} failed; retrying in "
            f"{event.retry_in_seconds:.1f}s",
        )
    elif type(event) in OUTCOMES:
        ended = await _outcome(conn, instance, event, strings)
        if ended is not None and finished is not None:
            finished(ended)
    else:
        log.warning("event type not handled", event_type=type(event).__name__)
        return "stale"
    return "applied"


def _one_statement(conn: AsyncConnection) -> bool:
    """Whether writes may travel together as CTEs of one statement (PostgreSQL's)."""
    return conn.dialect.name == "postgresql"


async def _claim_and_lock(
    conn: AsyncConnection, event: Message, message_id: str
) -> tuple[bool, Any, Any]:
    """The inbox claim, then the event's instance and job locked (instance first, then job:
    every writer locks them in that order): whether the message is new, and the two rows (None
    when missing). On PostgreSQL in one statement (one round trip instead of three); there a
    redelivery whose instance or job is missing reads as new with rows missing (stale): either
    way nothing is applied."""
    if not _one_statement(conn):
        if not await inbox.claim(conn, CONSUMER, message_id, message_type(event)):
            return False, None, None
        return (
            True,
            await instances.lock(conn, event.instance_id),
            await jobs.lock(conn, event.job_id),
        )
    values = inbox.claim_values(CONSUMER, message_id, message_type(event))
    values |= {"p_instance_id": event.instance_id, "p_job_id": event.job_id}
    row = (await conn.execute(_claim_and_lock_statement(), values)).first()
    if row is None:
        return True, None, None
    found = row._mapping
    instance = SimpleNamespace(**{c.name: found[c.name] for c in db_instances.c})
    job = SimpleNamespace(**{c.name: found[JOB_COLUMN + c.name] for c in jobs_table.c})
    return bool(found["fresh"]), instance, job


JOB_COLUMN = "job__"


@functools.cache
def _claim_and_lock_statement() -> Any:
    """Built once (bound values only): the inbox claim as a CTE, and the instance's and job's
    rows joined and locked FOR UPDATE OF both, in that order (PostgreSQL locks a statement's
    row marks in the order of its FROM list)."""
    i, j = db_instances, jobs_table
    claimed = inbox.claimed_cte()
    return (
        select(
            *i.c,
            *(c.label(JOB_COLUMN + c.name) for c in j.c),
            exists(select(claimed.c.consumer)).label("fresh"),
        )
        .select_from(i.join(j, j.c.id == bindparam("p_job_id", type_=j.c.id.type)))
        .where(i.c.id == bindparam("p_instance_id", type_=i.c.id.type))
        .with_for_update(of=[i, j])
        .execution_options(**ENGINE_SPECIFIC)
    )


async def _outcome(
    conn: AsyncConnection, instance: Any, event: Message, strings: ConnectionStrings
) -> Row[Any] | None:
    operation, succeeded = OUTCOMES[type(event)]
    instance_status, _ = outcome(operation, succeeded)
    reason = event.reason if isinstance(event, OperationFailed) else None
    # The instance's outcome, then its job's: two statements, in this order, so that a stream
    # sees the instance's outcome before its job's (clients wait for the instance; a CTE's
    # write would not be ordered against the job's).
    if isinstance(event, InstanceCreated):
        # The dbo row and the instance's outcome: one statement where it can be.
        ods_id = await instances.settle_created(
            conn,
            instance,
            lambda: strings.encrypted(event.database_name),
            instance_status,
            odsinstancename=instance.name,
            databasename=event.database_name,
        )
        log.info("dbo.odsinstances row added", ods_instance_id=ods_id)
    else:
        values: dict[str, Any] = {}
        if isinstance(event, InstanceRenamed):
            if instance.odsinstanceid is not None:
                stored = await instances.connection_string_of(conn, instance.odsinstanceid)
                await instances.repoint_in_dbo(
                    conn,
                    instance.odsinstanceid,
                    new_name=event.new_name,
                    encrypted=lambda: strings.encrypted(event.database_name),
                    was_own=strings.own_test(event.old_database_name, stored),
                )
            values = {
                "name": event.new_name,
                "odsinstancename": event.new_name,
                "databasename": event.database_name,
            }
        elif isinstance(event, InstanceDeleted) and instance.odsinstanceid is not None:
            clients = await instances.remove_from_dbo(conn, instance.odsinstanceid)
            log.info(
                "dbo rows of the instance deleted",
                ods_instance_id=instance.odsinstanceid,
                api_clients=clients,
            )
        await instances.settle(conn, instance.id, instance_status, reason=reason, **values)
    ended = await jobs.finish(conn, event.job_id, reason=reason, worker=event.worker)
    if succeeded:
        log.info("job completed", operation=operation.value, status=instance_status.value)
    else:
        log.warning("job failed", operation=operation.value, reason=reason)
    return ended
