"""Carrying out one InstanceRequested command; every step re-checks what exists first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from contracts.messages import (
    InstanceCreated,
    InstanceCreateFailed,
    InstanceOperationProgress,
    InstanceOperationStarted,
    InstanceRequested,
    Message,
    Operation,
)
from services.provisioner.ods_server import DatabaseInfo, Marker, staging_name
from services.runtime.errors import (
    DatabaseExistsError,
    PermanentError,
    TemplateMissingError,
    TransientError,
)
from services.runtime.logging import get_logger

log = get_logger(__name__)


class OdsServer(Protocol):
    async def database(self, name: str) -> DatabaseInfo | None: ...
    def clone_slot(self) -> object: ...
    async def clone(self, template: str, target: str) -> None: ...
    async def mark(self, name: str, marker: Marker) -> None: ...
    async def rename(self, old: str, new: str) -> None: ...


Emit = Callable[[Message], Awaitable[None]]


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
    ) -> None:
        self._server = server
        self._emit = emit
        self._worker = worker
        self._retry_attempts = retry_attempts
        self._retry_max_wait = retry_max_wait
        self._heartbeat_interval = heartbeat_interval

    async def handle(self, cmd: InstanceRequested, attempt: int) -> None:
        """Publish Started, progress and exactly one outcome event for this attempt."""
        await self._emit(
            InstanceOperationStarted(
                job_id=cmd.job_id,
                instance_id=cmd.instance_id,
                tenant=cmd.tenant,
                operation=cmd.operation,
                attempt=attempt,
                worker=self._worker,
            )
        )
        if cmd.operation is Operation.CREATE:
            await self._create(cmd)
        else:
            raise PermanentError(f"operation {cmd.operation} is not supported yet")

    async def _progress(self, cmd: InstanceRequested, message: str, percent: int) -> None:
        log.info("progress", step=message, percent=percent)
        await self._emit(
            InstanceOperationProgress(
                job_id=cmd.job_id,
                instance_id=cmd.instance_id,
                tenant=cmd.tenant,
                operation=cmd.operation,
                message=message,
                percent=percent,
            )
        )

    async def _retrying(self, step: Callable[[], Awaitable[None]], what: str) -> None:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(self._retry_attempts),
            wait=wait_exponential_jitter(multiplier=0.5, max=self._retry_max_wait),
            reraise=True,
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    log.warning(
                        "retrying step",
                        step=what,
                        try_number=attempt.retry_state.attempt_number,
                    )
                await step()

    async def _heartbeat(self, cmd: InstanceRequested, message: str, percent: int) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            await self._progress(cmd, message, percent)

    async def _create(self, cmd: InstanceRequested) -> None:
        try:
            await self._retrying(lambda: self._create_steps(cmd), "create")
        except (PermanentError, TransientError) as exc:
            reason = str(exc)
            log.warning("create failed", reason=reason, database_name=cmd.database_name)
            await self._emit(
                InstanceCreateFailed(
                    job_id=cmd.job_id,
                    instance_id=cmd.instance_id,
                    tenant=cmd.tenant,
                    database_name=cmd.database_name,
                    reason=reason,
                )
            )
            return
        log.info("create succeeded", database_name=cmd.database_name)
        await self._emit(
            InstanceCreated(
                job_id=cmd.job_id,
                instance_id=cmd.instance_id,
                tenant=cmd.tenant,
                database_name=cmd.database_name,
            )
        )

    async def _create_steps(self, cmd: InstanceRequested) -> None:
        target = cmd.database_name
        marker = Marker(cmd.instance_id, cmd.job_id)
        await self._progress(cmd, f"Checking whether {target} exists", 10)
        existing = await self._server.database(target)
        if existing is not None:
            if existing.marker and existing.marker.instance_id == cmd.instance_id:
                await self._progress(cmd, f"{target} already created for this instance", 90)
                return
            raise DatabaseExistsError(
                f"database {target!r} already exists on the ODS server and was not created by "
                "this system for this instance; it was left untouched"
            )
        template = cmd.database_template
        if not template or await self._server.database(template) is None:
            raise TemplateMissingError(
                f"template database {template!r} does not exist on the ODS server"
            )
        staging = staging_name(cmd.job_id)
        if await self._server.database(staging) is None:
            await self._progress(cmd, f"Waiting for a clone slot for {template}", 20)
            async with self._server.clone_slot():  # type: ignore[attr-defined]
                await self._progress(cmd, f"Cloning {template}", 30)
                beat = asyncio.create_task(self._heartbeat(cmd, f"Cloning {template}", 30))
                try:
                    await self._server.clone(template, staging)
                finally:
                    beat.cancel()
        await self._progress(cmd, "Marking the new database as this instance's", 80)
        await self._server.mark(staging, marker)
        await self._progress(cmd, f"Renaming to {target}", 90)
        if await self._server.database(target) is not None:
            # Someone created the target while we cloned: leave both as they are.
            raise DatabaseExistsError(
                f"database {target!r} appeared on the ODS server during the clone; "
                f"the clone is kept as {staging!r}"
            )
        await self._server.rename(staging, target)
