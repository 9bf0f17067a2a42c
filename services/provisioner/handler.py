"""Carrying out one InstanceRequested command; every step re-checks what exists first."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from contracts.messages import (
    OUTCOMES,
    InstanceCreated,
    InstanceCreateFailed,
    InstanceDeleted,
    InstanceDeleteFailed,
    InstanceOperationProgress,
    InstanceOperationRetrying,
    InstanceOperationStarted,
    InstanceRenamed,
    InstanceRenameFailed,
    InstanceRequested,
    Message,
    Operation,
    OperationFailed,
)
from services.rules.errors import (
    DatabaseExistsError,
    PermanentError,
    TemplateMissingError,
    TransientError,
)
from services.rules.marker import Marker, staging_name
from services.rules.states import Claimed
from services.runtime.logging import get_logger
from services.runtime.metrics import RETRIES
from services.runtime.ods_server import DatabaseInfo, OnProgress, OnWait

log = get_logger(__name__)


class OdsSession(Protocol):
    async def database(self, name: str) -> DatabaseInfo | None: ...
    async def databases(self, names: list[str]) -> dict[str, DatabaseInfo | None]: ...
    async def staging_of(
        self, tenant: str | None, instance_id: int, deployment: str | None = None
    ) -> list[str]: ...
    async def clone(
        self,
        template: str,
        target: str,
        *,
        end_sessions: bool = False,
        on_progress: OnProgress | None = None,
    ) -> None: ...
    async def also_hold(self, instance_id: int, on_wait: OnWait | None = None) -> None: ...
    async def mark(self, name: str, marker: Marker) -> None: ...
    async def rename(self, old: str, new: str) -> None: ...
    async def drop(self, name: str) -> None: ...
    async def close_connections(self, name: str) -> None: ...
    async def allow_connections(self, name: str) -> None: ...


class OdsServer(Protocol):
    def session(
        self, instance_id: int, *, scope: str = "", on_wait: OnWait | None = None
    ) -> AbstractAsyncContextManager[OdsSession]: ...
    def clone_slot(self) -> AbstractAsyncContextManager[int]: ...


Emit = Callable[[Message], Awaitable[None]]
Claim = Callable[[uuid.UUID], Awaitable[Claimed]]
# Held around the step that changes the server for good (a rename, a drop, a clone getting its
# name): yields False when the job may no longer act (it was given up meanwhile). While it is
# held, the job cannot be given up; when it exits cleanly, the job records that its server
# step is done (so a later give-up applies that fact instead of failing the job).
Fence = Callable[[uuid.UUID], AbstractAsyncContextManager[bool]]
# This deployment's identity, read from its admin database (None: not named).
Deployment = Callable[[], Awaitable[str | None]]
# Why a database is one this system must never act on (None when it may).
Protected = Callable[[str], str | None]


async def _always(job_id: uuid.UUID) -> Claimed:
    return Claimed.CLAIMED


@asynccontextmanager
async def _open_fence(job_id: uuid.UUID) -> AsyncIterator[bool]:
    yield True


def _nothing_protected(name: str) -> str | None:
    return None


class GivenUpError(Exception):
    """The job was given up (or otherwise ended) before its last step: that step is not taken."""


# The failure outcome of each operation (InstanceCreateFailed, …), from the contracts.
FAILURE_OF: dict[Operation, type[OperationFailed]] = {
    op: kind
    for kind, (op, succeeded) in OUTCOMES.items()
    if not succeeded and issubclass(kind, OperationFailed)
}


async def _settled(task: asyncio.Task[Any]) -> None:
    """Until `task` has ended, whatever its end (what it raised is its awaiter's to report; a
    task nobody awaited, because what ran beside it failed first, is only waited for)."""
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved: not reported again as never retrieved


def _first_look(cmd: InstanceRequested) -> list[str]:
    """What a create reads first, at one moment (one round trip): from a template, the target,
    the template and its staging clone; a copy, only its target (it reads its source once it
    holds the source's lock)."""
    if cmd.source_instance_id is not None or not cmd.database_template:
        return [cmd.database_name]
    return [cmd.database_name, cmd.database_template, staging_name(cmd.job_id)]


def _about(cmd: InstanceRequested) -> dict[str, Any]:
    """What every event of a command repeats from it."""
    return {"job_id": cmd.job_id, "instance_id": cmd.instance_id, "tenant": cmd.tenant}


async def _unnamed() -> str | None:
    return None


class Provisioner:
    def __init__(
        self,
        server: OdsServer,
        emit: Emit,
        *,
        worker: str,
        retry_attempts: int = 5,
        retry_max_wait: float = 10.0,
        heartbeat_interval: float = 10.0,
        progress_delay: float = 0.0,
        claim: Claim = _always,
        fence: Fence = _open_fence,
        protected: Protected = _nothing_protected,
        scope: str = "",
        deployment: Deployment = _unnamed,
    ) -> None:
        self._server = server
        # This deployment's identity (read once from the admin database): written into every
        # mark, and another deployment's mark is never taken for this one's.
        self._read_deployment = deployment
        self._deployment: str | None = None
        self._deployment_read = False
        self._claim = claim
        self._fence = fence
        self._protected = protected
        # The tenant's admin database: instance ids are unique there, so its locks are too.
        self._scope = scope
        self._send = emit
        self._worker = worker
        self._retry_attempts = retry_attempts
        self._retry_max_wait = retry_max_wait
        self._heartbeat_interval = heartbeat_interval
        # The step each running job is on, repeated as its heartbeat.
        self._step: dict[uuid.UUID, tuple[str, int, float]] = {}
        # With a delay, a step is reported only once it has lasted that long: a fast create is
        # Started then its outcome, not a stream of steps for the status service to apply.
        self._progress_delay = progress_delay
        self._delayed: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._beats: dict[uuid.UUID, asyncio.Task[None]] = {}
        # Each running job's Started, on its way to the broker: the work goes on meanwhile, and
        # every other event of the job waits for its confirm (see _emit). With a progress delay,
        # Started too waits that long first: an operation that ends sooner reports its outcome
        # alone (the status service records its start from the claim), and its Started is
        # never sent. Once past the delay (`_announced`), a Started is always sent.
        self._starting: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._announced: set[uuid.UUID] = set()

    async def handle(self, cmd: InstanceRequested, attempt: int) -> None:
        """Publish Started (once the instance's lock is held and, for a job's first attempt, the
        progress delay has passed: an outcome that comes first goes out instead), progress, and
        exactly one outcome."""
        started = False
        # What a create reads first, read while its job is claimed (None: not read, or stale).
        known: dict[str, DatabaseInfo | None] | None = None

        async def steps(session: OdsSession) -> Message:
            nonlocal known
            if cmd.operation is Operation.CREATE:
                first, known = known, None  # used once: a later try reads again
                return await self._create(session, cmd, first)
            if cmd.operation is Operation.RENAME:
                return await self._rename(session, cmd)
            return await self._delete(session, cmd)

        async def waiting(holder: str) -> None:
            # Another operation (or anyone else) holds the instance's lock: say so, and keep
            # saying it every heartbeat, so a waiting job is never silent.
            await self._progress(
                cmd,
                f"Waiting for instance {cmd.instance_id}'s lock on the ODS server, held by "
                f"{holder}",
                5,
            )
            self._beat(cmd)

        async def before_sleep(state: RetryCallState) -> None:
            await self._retrying(cmd, state)

        try:
            async for retry in AsyncRetrying(
                retry=retry_if_exception_type(TransientError),
                stop=stop_after_attempt(self._retry_attempts),
                wait=wait_exponential_jitter(multiplier=0.5, max=self._retry_max_wait),
                before_sleep=before_sleep,
                reraise=True,
            ):
                with retry:
                    await self._know_deployment()
                    async with self._server.session(
                        cmd.instance_id, scope=self._scope, on_wait=waiting
                    ) as session:
                        if not started:
                            claim, known = await self._claimed_and_looked(session, cmd)
                            if claim not in (Claimed.CLAIMED, Claimed.RESUMED):
                                if claim is Claimed.ENDED and cmd.operation is Operation.CREATE:
                                    await self._drop_staging(session, cmd)
                                return
                            started = True
                            # Published once the progress delay has passed, confirmed while
                            # the work goes on: no other event of the job goes out before this
                            # confirm (_emit waits for it), but an outcome that comes first goes
                            # out instead of it. Only a job's first attempt waits: a later one (a
                            # redelivery, a re-drive) is published at once, as every attempt was
                            # before, so each attempt after the first is counted and seen.
                            waits = claim is Claimed.CLAIMED and self._progress_delay > 0
                            if not waits:
                                self._announced.add(cmd.job_id)  # sent, whatever comes
                            self._starting[cmd.job_id] = asyncio.create_task(
                                self._started(cmd, attempt, waits=waits)
                            )
                            self._beat(cmd)
                        try:
                            outcome = await steps(session)
                        except PermanentError as exc:
                            outcome = self._failure(cmd, str(exc))
                        except GivenUpError as exc:
                            log.warning("job given up; last step not taken", reason=str(exc))
                            return
                        # Reported while the instance's lock is still held: the next operation
                        # on the instance cannot start before this one has said how it ended.
                        self._end_steps(cmd)
                        await self._report(cmd, outcome)
                        return
        except (PermanentError, TransientError) as exc:
            self._end_steps(cmd)
            await self._report(cmd, self._failure(cmd, str(exc)))
        finally:
            beat = self._beats.pop(cmd.job_id, None)
            if beat is not None:
                beat.cancel()
            self._end_steps(cmd)
            await self._started_sent(cmd)

    def _beat(self, cmd: InstanceRequested) -> None:
        """Start the job's heartbeat (once)."""
        if cmd.job_id not in self._beats:
            self._beats[cmd.job_id] = asyncio.create_task(self._heartbeat(cmd))

    def _end_steps(self, cmd: InstanceRequested) -> None:
        """No step is reported after this: the outcome comes next."""
        self._step.pop(cmd.job_id, None)
        delayed = self._delayed.pop(cmd.job_id, None)
        if delayed is not None:
            delayed.cancel()

    async def _claimed(self, cmd: InstanceRequested) -> Claimed:
        """Claim the job (under the instance's lock): only a job that is still waiting for its
        worker, or running (a redelivery, a re-drive), and still the instance's, is worked on."""
        try:
            claimed = await self._claim(cmd.job_id)
        except Exception as exc:
            raise TransientError(f"admin database unreachable to claim the job: {exc!r}") from exc
        if claimed is Claimed.CANCELLED:
            log.info("job was cancelled before it started; skipped", operation=cmd.operation.value)
        elif claimed is Claimed.ENDED:
            log.warning(
                "job has already ended (given up or finished); its command is skipped",
                operation=cmd.operation.value,
            )
        return claimed

    async def _claimed_and_looked(
        self, s: OdsSession, cmd: InstanceRequested
    ) -> tuple[Claimed, dict[str, DatabaseInfo | None] | None]:
        """The claim, and beside it (at the same time, on the ODS server's connection) what a
        create reads first: one round trip off the create's way. What was read is used only
        once the claim lets the job run; a read that failed is made again by the create itself
        (and fails there as it fails)."""
        if cmd.operation is not Operation.CREATE:
            return await self._claimed(cmd), None
        claim, known = await asyncio.gather(
            self._claimed(cmd), s.databases(_first_look(cmd)), return_exceptions=True
        )
        if isinstance(claim, BaseException):
            raise claim
        return claim, None if isinstance(known, BaseException) else known

    async def _know_deployment(self) -> None:
        if self._deployment_read:
            return
        try:
            self._deployment = await self._read_deployment()
        except Exception as exc:
            raise TransientError(
                f"admin database unreachable to read this deployment's identity: {exc!r}"
            ) from exc
        self._deployment_read = True

    def _ours(self, info: DatabaseInfo | None, cmd: InstanceRequested) -> bool:
        """Whether the database carries this instance's mark (its tenant's and deployment's)."""
        return (
            info is not None
            and info.marker is not None
            and info.marker.names(cmd.tenant, cmd.instance_id, self._deployment)
        )

    async def _drop_staging(self, s: OdsSession, cmd: InstanceRequested) -> None:
        """The clone this job made (it is named for the job): this system drops what it made."""
        staging = staging_name(cmd.job_id)
        if await s.database(staging) is not None:
            await s.drop(staging)
            log.info("staging clone of an ended job dropped", database_name=staging)

    def _refuse_protected(self, info: DatabaseInfo | None) -> None:
        if info is None:
            return
        why = "it is a template" if info.is_template else self._protected(info.name)
        if why:
            raise PermanentError(
                f"database {info.name!r} is never renamed, dropped or emptied of sessions by "
                f"this system: {why}"
            )

    async def _report(self, cmd: InstanceRequested, outcome: Message) -> None:
        if isinstance(outcome, InstanceCreateFailed | InstanceRenameFailed | InstanceDeleteFailed):
            log.warning("operation failed", operation=cmd.operation.value, reason=outcome.reason)
        else:
            log.info("operation succeeded", operation=cmd.operation.value)
        await self._emit(outcome)

    async def _retrying(self, cmd: InstanceRequested, state: RetryCallState) -> None:
        RETRIES.labels("provisioning").inc()
        error = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "transient error; retrying",
            try_number=state.attempt_number,
            error=str(error),
            retry_in_seconds=round(delay, 2),
        )
        await self._emit(
            InstanceOperationRetrying(
                **_about(cmd),
                operation=cmd.operation,
                try_number=state.attempt_number,
                max_tries=self._retry_attempts,
                error=str(error)[:1000],
                retry_in_seconds=delay,
            )
        )

    async def _emit(self, event: Message) -> None:
        """Publish an event and wait for its confirm. Any event of a job but its Started waits
        first for the Started's confirm (and fails as it failed): the broker gets a job's
        events in the order they happened, each only after the one before was confirmed."""
        starting = self._starting.get(event.job_id)
        if starting is not None and not isinstance(event, InstanceOperationStarted):
            if type(event) in OUTCOMES and self._unannounced(event.job_id):
                # Ended within the progress delay: its outcome says it all.
                await self._withdraw_started(event.job_id)
            else:
                await asyncio.shield(starting)
        await self._send(event.model_copy(update={"worker": self._worker}))

    def _unannounced(self, job_id: uuid.UUID) -> bool:
        """Whether the job's Started is still waiting out the progress delay (not yet sent)."""
        starting = self._starting.get(job_id)
        return starting is not None and not starting.done() and job_id not in self._announced

    async def _withdraw_started(self, job_id: uuid.UUID) -> None:
        """Cancel a Started still waiting out the delay: it is never sent."""
        starting = self._starting.pop(job_id)
        starting.cancel()
        # Waited for without raising its cancellation (a cancellation of this task still does).
        await _settled(starting)

    async def _started_sent(self, cmd: InstanceRequested) -> None:
        """At the end of a command: its Started confirmed, or why it was not (logged) when no
        later event was there to wait for it (a job given up, a redelivery that found it ended)."""
        if self._unannounced(cmd.job_id):
            # The command ends without an outcome (given up) within the delay: nothing to say.
            await self._withdraw_started(cmd.job_id)
            return
        starting = self._starting.pop(cmd.job_id, None)
        try:
            if starting is not None:
                await asyncio.shield(starting)
        except Exception as exc:
            log.warning("Started event not confirmed", error=repr(exc))
        finally:
            self._announced.discard(cmd.job_id)

    def _failure(self, cmd: InstanceRequested, reason: str) -> Message:
        return FAILURE_OF[cmd.operation](
            **_about(cmd), database_name=cmd.database_name, reason=reason
        )

    async def _started(self, cmd: InstanceRequested, attempt: int, *, waits: bool) -> None:
        if waits:
            await asyncio.sleep(self._progress_delay)
            self._announced.add(cmd.job_id)  # from here on it is sent, whatever comes
        await self._emit(
            InstanceOperationStarted(
                **_about(cmd),
                operation=cmd.operation,
                attempt=attempt,
            )
        )

    async def _progress(self, cmd: InstanceRequested, message: str, percent: int) -> None:
        """Start a step: log it, remember it for the heartbeat, report it."""
        log.info("progress", step=message, percent=percent)
        step = (message, percent, time.monotonic())
        self._step[cmd.job_id] = step
        if self._progress_delay <= 0:
            await self._report_progress(cmd, message, percent)
            return
        previous = self._delayed.pop(cmd.job_id, None)
        if previous is not None:
            previous.cancel()
        self._delayed[cmd.job_id] = asyncio.create_task(self._report_if_still(cmd, step))

    async def _report_if_still(self, cmd: InstanceRequested, step: tuple[str, int, float]) -> None:
        """Report the step if the job is still on it after the delay."""
        await asyncio.sleep(self._progress_delay)
        if self._step.get(cmd.job_id) is step:
            try:
                await self._report_progress(cmd, step[0], step[1])
            except Exception as exc:  # the heartbeat repeats it
                log.warning("progress not sent", error=repr(exc))

    async def _report_progress(self, cmd: InstanceRequested, message: str, percent: int) -> None:
        await self._emit(
            InstanceOperationProgress(
                **_about(cmd), operation=cmd.operation, message=message, percent=percent
            )
        )

    async def _heartbeat(self, cmd: InstanceRequested) -> None:
        """Repeat the current step while the operation runs (a clone, a wait for a clone slot
        or for a retry), so the status service can tell a live job from an orphan."""
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            message, percent, since = self._step.get(cmd.job_id, ("Working", 0, time.monotonic()))
            elapsed = time.monotonic() - since
            try:
                # The same step, saying how long it has taken so far (a long clone, a wait).
                await self._report_progress(cmd, f"{message} ({elapsed:.1f} s so far)", percent)
            except Exception as exc:  # a missed heartbeat must not fail the operation
                log.warning("heartbeat not sent", error=repr(exc))

    async def _create(
        self,
        s: OdsSession,
        cmd: InstanceRequested,
        known: dict[str, DatabaseInfo | None] | None = None,
    ) -> Message:
        """`known`: what `_first_look` names, read under the instance's lock beside the claim
        (None: read here)."""
        target = cmd.database_name
        done = InstanceCreated(**_about(cmd), database_name=target)
        await self._progress(cmd, f"Checking whether {target} exists", 10)
        template = cmd.database_template
        source = cmd.source_instance_id
        staging = staging_name(cmd.job_id)
        if known is None:
            known = await s.databases(_first_look(cmd))
        existing = known[target]
        if existing is not None:
            if self._ours(existing, cmd):
                await self._progress(cmd, f"{target} already created for this instance", 90)
                return done
            raise DatabaseExistsError(
                f"database {target!r} already exists on the ODS server and was not created by "
                "this system for this instance; it was left untouched"
            )
        if source is not None:
            await self._hold_source(s, cmd, source)
        found = None
        if template:
            found = known[template] if template in known else await s.database(template)
        if not template or found is None:
            raise TemplateMissingError(
                f"template database {template!r} does not exist on the ODS server"
                if source is None
                else f"the database of instance {source} ({template!r}), to be copied, does "
                "not exist on the ODS server"
            )
        if source is not None and cmd.end_source_sessions:
            # Ending sessions acts on the source: only on a database this system made for it.
            self._refuse_protected(found)
            if found.marker is None or not found.marker.names(cmd.tenant, source, self._deployment):
                raise PermanentError(
                    f"database {template!r} carries no mark of instance {source}: its sessions "
                    "were not ended and it was not copied (adopt it first: `edfi-im adopt`)"
                )
        staged = known[staging] if staging in known else await s.database(staging)
        if staged is not None and not staged.online:
            # A restore or copy of an earlier attempt that never finished: this job's own.
            await s.drop(staging)
            staged = None
        if staged is None:
            await self._progress(cmd, f"Waiting for a clone slot for {template}", 20)
            async with self._server.clone_slot():
                if source is None:
                    doing = f"Cloning {template}"
                else:
                    ending = ", ending its sessions" if cmd.end_source_sessions else ""
                    doing = f"Copying {template} (instance {source}'s database{ending})"
                await self._progress(cmd, doing, 30)

                async def cloned(percent: float) -> None:
                    await self._progress(cmd, f"{doing}: {percent:.0f} %", 30 + int(percent / 2))

                await s.clone(
                    template,
                    staging,
                    end_sessions=cmd.end_source_sessions,
                    on_progress=cloned,
                )
        await self._progress(cmd, "Marking the new database as this instance's", 80)
        marker = Marker(cmd.instance_id, cmd.job_id, cmd.tenant, self._deployment)

        async def mark_and_look() -> DatabaseInfo | None:
            await s.mark(staging, marker)
            return await s.database(target)

        # The clone marked as this instance's, then whether the target appeared during the
        # clone: both on the ODS server's connection while the fence is entered on the admin
        # database's (their round trips off the way), answered before anything is done in the
        # fence. A mark that failed is raised there: the fence records nothing, and nothing
        # unmarked is ever renamed.
        looked = asyncio.create_task(mark_and_look())
        try:
            async with self._fence(cmd.job_id) as live:
                if await looked is not None:
                    await s.drop(staging)  # this system's own clone: nothing of it is left
                    raise DatabaseExistsError(
                        f"database {target!r} appeared on the ODS server during the clone and "
                        f"was left untouched; the clone ({staging!r}) was dropped"
                    )
                if not live:
                    await s.drop(staging)
                    raise GivenUpError(f"the clone {staging!r} was dropped, {target!r} not created")
                await self._progress(cmd, f"Renaming to {target}", 90)
                await s.rename(staging, target)
        finally:
            await _settled(looked)  # never left running on the session's connection
        return done

    async def _hold_source(self, s: OdsSession, cmd: InstanceRequested, source: int) -> None:
        """A copy holds its source's lock as well: no rename or delete of the source runs while
        its database is read."""

        async def waiting(holder: str) -> None:
            await self._progress(
                cmd, f"Waiting for instance {source}'s current operation ({holder}) to end", 15
            )

        await s.also_hold(source, waiting)

    async def _rename(self, s: OdsSession, cmd: InstanceRequested) -> Message:
        source, target = cmd.database_name, cmd.new_database_name
        if not target or not cmd.new_name:
            raise PermanentError("a rename command needs new_name and new_database_name")
        done = InstanceRenamed(
            **_about(cmd),
            old_database_name=source,
            database_name=target,
            new_name=cmd.new_name,
        )
        await self._progress(cmd, f"Checking {source} and {target}", 10)
        known = await s.databases([source, target])
        old, new = known[source], known[target]
        self._refuse_protected(old)
        self._refuse_protected(new)
        if old is None:
            if self._ours(new, cmd):  # renamed by an earlier attempt
                await s.allow_connections(target)
                return done
            raise PermanentError(f"database {source!r} does not exist on the ODS server")
        if old.marker is None:
            raise PermanentError(
                f"database {source!r} carries no mark of this system (it was made by another "
                "tool and imported): adopt it first (`edfi-im adopt <instance id>`), then rename "
                "it; it was left untouched"
            )
        if not old.marker.names(cmd.tenant, cmd.instance_id, self._deployment):
            raise PermanentError(f"database {source!r} belongs to another instance")
        if new is not None:
            await s.allow_connections(source)  # an earlier attempt may have closed it
            raise DatabaseExistsError(
                f"a database named {target!r} already exists on the ODS server; "
                f"{source!r} keeps its name"
            )
        async with self._fence(cmd.job_id) as live:
            if not live:
                await s.allow_connections(source)  # an earlier attempt may have closed it
                raise GivenUpError(f"{source!r} keeps its name")
            await self._progress(cmd, f"Ending sessions on {source}", 40)
            await s.close_connections(source)
            await self._progress(cmd, f"Renaming {source} to {target}", 70)
            try:
                await s.rename(source, target)
            except Exception:
                await s.allow_connections(source)
                raise
        await s.allow_connections(target)
        return done

    async def _delete(self, s: OdsSession, cmd: InstanceRequested) -> Message:
        name = cmd.database_name

        def done(dropped: bool) -> InstanceDeleted:
            return InstanceDeleted(
                **_about(cmd),
                database_name=name,
                dropped=dropped,
            )

        await self._progress(cmd, f"Checking {name}", 10)
        info = await s.database(name)
        self._refuse_protected(info)
        # Clones of this instance a create left behind (it failed after cloning): this
        # system's own, marked for this instance, so they go with it.
        for staging in await s.staging_of(cmd.tenant, cmd.instance_id, self._deployment):
            await s.drop(staging)
            log.info("staging clone of the instance dropped", database_name=staging)
        if info is None:
            await self._progress(cmd, f"{name} is already gone", 90)
            return done(False)
        if self._ours(info, cmd):
            # DROP … WITH (FORCE) ends the sessions itself; a failed drop leaves it as it was.
            async with self._fence(cmd.job_id) as live:
                if not live:
                    raise GivenUpError(f"{name!r} was not dropped")
                await self._progress(cmd, f"Ending sessions on {name} and dropping it", 50)
                await s.drop(name)
            return done(True)
        if not cmd.expect_database:
            # The create failed on a name someone else's database holds: nothing of ours to drop.
            log.info("foreign database left untouched", database_name=name)
            return done(False)
        raise PermanentError(
            f"database {name!r} was not created by this system for this instance; "
            "it was left untouched"
        )
