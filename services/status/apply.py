"""Applying provisioner events to the admin database: one transaction per event, with the inbox
row that makes a redelivered event a no-op and the job check that makes a stale one a no-op."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Literal

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

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
from services.admin_db.tables import (
    api_client_application_education_organizations,
    api_client_ods_instances,
    api_client_ownership_tokens,
    api_clients,
    client_access_tokens,
    db_instances,
    inbox,
    jobs,
    ods_instance_contexts,
    ods_instance_derivatives,
    ods_instances,
)
from services.rules import crypto
from services.rules.states import InstanceStatus, JobStatus, is_terminal, on_started, outcome
from services.runtime.logging import get_logger

log = get_logger(__name__)

CONSUMER = "status"
Outcome = Literal["applied", "duplicate", "stale"]

# What references an API client in Ed-Fi's dbo (the foreign keys from clientaccesstokens are NO
# ACTION; the other two cascade, and are cleared explicitly all the same).
CLIENT_REFERENCES = (
    client_access_tokens,
    api_client_ownership_tokens,
    api_client_application_education_organizations,
)


async def clients_of_only(conn: AsyncConnection, ods_id: int) -> list[int]:
    """The API clients linked to this ODS instance and to no other, locked: a link or token
    another tool adds meanwhile waits for this transaction (seed 001: they go with it)."""
    links, other = api_client_ods_instances, aliased(api_client_ods_instances)
    found = await conn.scalars(
        select(api_clients.c.apiclientid)
        .where(
            api_clients.c.apiclientid.in_(
                select(links.c.apiclient_apiclientid).where(
                    links.c.odsinstance_odsinstanceid == ods_id
                )
            )
        )
        .where(
            ~exists()
            .where(other.c.apiclient_apiclientid == api_clients.c.apiclientid)
            .where(other.c.odsinstance_odsinstanceid != ods_id)
        )
        .order_by(api_clients.c.apiclientid)
        .with_for_update()
    )
    return list(found.all())


async def delete_ods_instance(conn: AsyncConnection, ods_id: int) -> int:
    """Remove an ODS instance from dbo in the order Ed-Fi's foreign keys need: the tokens,
    ownership-token and education-organization links of the clients linked to it alone, every
    client link, those clients, its contexts and derivatives, then the row. A client another
    instance still uses keeps everything but its link to this one; applications and vendors
    stay (as Ed-Fi's Admin API leaves them). Returns how many clients went."""
    await conn.execute(
        select(ods_instances.c.odsinstanceid)
        .where(ods_instances.c.odsinstanceid == ods_id)
        .with_for_update()
    )
    doomed = await clients_of_only(conn, ods_id)
    if doomed:
        for table in CLIENT_REFERENCES:
            await conn.execute(delete(table).where(table.c.apiclient_apiclientid.in_(doomed)))
    await conn.execute(
        delete(api_client_ods_instances).where(
            api_client_ods_instances.c.odsinstance_odsinstanceid == ods_id
        )
    )
    if doomed:
        await conn.execute(delete(api_clients).where(api_clients.c.apiclientid.in_(doomed)))
    for table in (ods_instance_contexts, ods_instance_derivatives):
        await conn.execute(delete(table).where(table.c.odsinstance_odsinstanceid == ods_id))
    await conn.execute(delete(ods_instances).where(ods_instances.c.odsinstanceid == ods_id))
    return len(doomed)


async def claim_inbox(conn: AsyncConnection, message_id: str, kind: str) -> bool:
    """True the first time this message id is seen (in this transaction's view)."""
    result = await conn.execute(
        pg_insert(inbox)
        .values(
            consumer=CONSUMER, message_id=message_id, message_type=kind, processed_at=func.now()
        )
        .on_conflict_do_nothing()
        .returning(inbox.c.message_id)
    )
    return result.first() is not None


async def write_details(
    conn: AsyncConnection,
    ods_id: int,
    contexts: list[dict[str, str]] | None,
    derivatives: list[dict[str, str]] | None,
    connection_string: str,
) -> None:
    """The instance's contexts and derivatives in dbo, replacing what was there. A derivative
    gets the instance's own connection string until its real one is set by whoever runs it."""
    for table in (ods_instance_contexts, ods_instance_derivatives):
        await conn.execute(delete(table).where(table.c.odsinstance_odsinstanceid == ods_id))
    if contexts:
        await conn.execute(
            insert(ods_instance_contexts),
            [
                {
                    "odsinstance_odsinstanceid": ods_id,
                    "contextkey": c["contextKey"],
                    "contextvalue": c["contextValue"],
                }
                for c in contexts
            ],
        )
    if derivatives:
        await conn.execute(
            insert(ods_instance_derivatives),
            [
                {
                    "odsinstance_odsinstanceid": ods_id,
                    "derivativetype": d["derivativeType"],
                    "connectionstring": connection_string,
                }
                for d in derivatives
            ],
        )


class StatusApplier:
    def __init__(self, encryption_key: bytes, connection_string: Callable[[str], str]) -> None:
        self._key = encryption_key
        self._connection_string = connection_string

    def encrypted_connection_string(self, database: str) -> str:
        return crypto.encrypt(self._connection_string(database), self._key)

    async def apply(self, conn: AsyncConnection, event: Message, message_id: str) -> Outcome:
        if not await claim_inbox(conn, message_id, message_type(event)):
            return "duplicate"
        # Instance first, then job: the gateway locks the instance row too, in that order.
        instance = (
            await conn.execute(
                select(db_instances).where(db_instances.c.id == event.instance_id).with_for_update()
            )
        ).first()
        job = (
            await conn.execute(select(jobs).where(jobs.c.id == event.job_id).with_for_update())
        ).first()
        if instance is None or job is None:
            log.warning("event for an unknown instance or job; ignored")
            return "stale"
        if is_terminal(job.status) or instance.currentjobid != job.id:
            log.info("stale event ignored", job_status=job.status, event_type=type(event).__name__)
            return "stale"
        if isinstance(event, InstanceOperationStarted):
            await self._started(conn, instance, event)
        elif isinstance(event, InstanceOperationProgress):
            await self._job(
                conn, event, progress_message=event.message, progress_percent=event.percent
            )
        elif isinstance(event, InstanceOperationRetrying):
            # The job stays Running (or Pending); it shows the tries and the last error.
            await self._job(
                conn,
                event,
                attempts=jobs.c.attempts + 1,
                error=event.error,
                progress_message=(
                    f"Try {event.try_number} of {event.max_tries} failed; retrying in "
                    f"{event.retry_in_seconds:.1f}s"
                ),
            )
        elif type(event) in OUTCOMES:
            await self._outcome(conn, instance, event)
        else:
            log.warning("event type not handled", event_type=type(event).__name__)
            return "stale"
        return "applied"

    async def _job(self, conn: AsyncConnection, event: Message, **values: Any) -> None:
        await conn.execute(
            update(jobs).where(jobs.c.id == event.job_id).values(heartbeat_at=func.now(), **values)
        )

    async def _instance(self, conn: AsyncConnection, event: Message, **values: Any) -> None:
        await conn.execute(
            update(db_instances)
            .where(db_instances.c.id == event.instance_id)
            .values(lastmodifieddate=func.now(), lastrefreshed=func.now(), **values)
        )

    async def _started(
        self, conn: AsyncConnection, instance: Any, event: InstanceOperationStarted
    ) -> None:
        await self._job(
            conn,
            event,
            status=JobStatus.RUNNING.value,
            started_at=func.coalesce(jobs.c.started_at, func.now()),
            attempts=jobs.c.attempts + 1,
            worker=event.worker,
            progress_message=f"Started (attempt {event.attempt})",
        )
        new_status = on_started(InstanceStatus(instance.status))
        if new_status != instance.status:
            await self._instance(conn, event, status=new_status.value)
        log.info("job running", attempt=event.attempt, worker=event.worker)

    async def _outcome(self, conn: AsyncConnection, instance: Any, event: Message) -> None:
        operation, succeeded = OUTCOMES[type(event)]
        instance_status, job_status = outcome(operation, succeeded)
        reason = event.reason if isinstance(event, OperationFailed) else None
        values: dict[str, Any] = {}
        if isinstance(event, InstanceCreated):
            values = await self._created(conn, instance, event)
        elif isinstance(event, InstanceRenamed):
            values = await self._renamed(conn, instance, event)
        elif isinstance(event, InstanceDeleted):
            await self._deleted(conn, instance)
        await self._instance(
            conn,
            event,
            status=instance_status.value,
            error=reason,
            pendingname=None,
            pendingdatabasename=None,
            **values,
        )
        await self._job(
            conn,
            event,
            status=job_status.value,
            finished_at=func.now(),
            progress_message=job_status.value if reason is None else reason[:500],
            progress_percent=100 if succeeded else None,
            error=reason,
        )
        if succeeded:
            log.info("job completed", operation=operation.value, status=instance_status.value)
        else:
            log.warning("job failed", operation=operation.value, reason=reason)

    async def _created(
        self, conn: AsyncConnection, instance: Any, event: InstanceCreated
    ) -> dict[str, Any]:
        ods_id = await conn.scalar(
            insert(ods_instances)
            .values(
                name=instance.name,
                instancetype=instance.instancetype,
                connectionstring=self.encrypted_connection_string(event.database_name),
            )
            .returning(ods_instances.c.odsinstanceid)
        )
        await write_details(
            conn,
            ods_id,
            instance.contexts,
            instance.derivatives,
            self.encrypted_connection_string(event.database_name),
        )
        log.info("dbo.odsinstances row added", ods_instance_id=ods_id)
        return {
            "odsinstanceid": ods_id,
            "odsinstancename": instance.name,
            "databasename": event.database_name,
        }

    async def _renamed(
        self, conn: AsyncConnection, instance: Any, event: InstanceRenamed
    ) -> dict[str, Any]:
        if instance.odsinstanceid is not None:
            await self._repoint(conn, instance.odsinstanceid, event)
        return {
            "name": event.new_name,
            "odsinstancename": event.new_name,
            "databasename": event.database_name,
        }

    async def _repoint(self, conn: AsyncConnection, ods_id: int, event: InstanceRenamed) -> None:
        """The dbo row's name and connection string follow the rename, and so does every
        derivative that held the instance's own connection string (one pointed at a real
        replica is left alone)."""
        old = await conn.scalar(
            select(ods_instances.c.connectionstring)
            .where(ods_instances.c.odsinstanceid == ods_id)
            .with_for_update()
        )
        own = {self._connection_string(event.old_database_name)}
        if old:
            with contextlib.suppress(crypto.DecryptionError):
                own.add(crypto.decrypt(old, self._key))
        await conn.execute(
            update(ods_instances)
            .where(ods_instances.c.odsinstanceid == ods_id)
            .values(
                name=event.new_name,
                connectionstring=self.encrypted_connection_string(event.database_name),
            )
        )
        derivatives = (
            await conn.execute(
                select(
                    ods_instance_derivatives.c.odsinstancederivativeid,
                    ods_instance_derivatives.c.connectionstring,
                )
                .where(ods_instance_derivatives.c.odsinstance_odsinstanceid == ods_id)
                .with_for_update()
            )
        ).all()
        for d in derivatives:
            if not d.connectionstring:
                continue
            try:
                plain = crypto.decrypt(d.connectionstring, self._key)
            except crypto.DecryptionError:
                continue  # not ours to read: someone else's replica
            if plain in own:
                await conn.execute(
                    update(ods_instance_derivatives)
                    .where(
                        ods_instance_derivatives.c.odsinstancederivativeid
                        == d.odsinstancederivativeid
                    )
                    .values(connectionstring=self.encrypted_connection_string(event.database_name))
                )

    async def _deleted(self, conn: AsyncConnection, instance: Any) -> None:
        ods_id = instance.odsinstanceid
        if ods_id is None:
            return
        clients = await delete_ods_instance(conn, ods_id)
        log.info("dbo rows of the instance deleted", ods_instance_id=ods_id, api_clients=clients)
