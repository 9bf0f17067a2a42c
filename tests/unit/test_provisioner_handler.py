"""The provisioner's create, against an in-memory ODS server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from contracts.messages import (
    InstanceCreated,
    InstanceCreateFailed,
    InstanceOperationProgress,
    InstanceOperationStarted,
    InstanceRequested,
    Message,
    Operation,
)
from services.provisioner.handler import Provisioner
from services.provisioner.ods_server import DatabaseInfo, Marker, staging_name
from services.runtime.errors import PermanentError, TransientError

TEMPLATE = "EdFi_Ods_Minimal_Template"
TARGET = "EdFi_Ods_Grand_Bend"
INSTANCE_ID = 17


class FakeOdsServer:
    """An ODS server as a dict of database name -> marker (None for an unmarked database)."""

    def __init__(self, databases: dict[str, Marker | None] | None = None) -> None:
        self.databases: dict[str, Marker | None] = dict(databases or {})
        self.clone_calls: list[tuple[str, str]] = []
        self.mark_calls: list[tuple[str, Marker]] = []
        self.rename_calls: list[tuple[str, str]] = []
        self.slots_in_use = 0
        self.clone_failures: list[Exception] = []
        self.rename_failures: list[Exception] = []
        self.clone_delay = 0.0
        self.during_clone: Callable[[], None] | None = None

    async def database(self, name: str) -> DatabaseInfo | None:
        if name not in self.databases:
            return None
        return DatabaseInfo(name, self.databases[name])

    @asynccontextmanager
    async def clone_slot(self) -> AsyncIterator[int]:
        self.slots_in_use += 1
        try:
            yield 0
        finally:
            self.slots_in_use -= 1

    async def clone(self, template: str, target: str) -> None:
        self.clone_calls.append((template, target))
        assert self.slots_in_use == 1, "clone must run while holding a clone slot"
        if self.clone_failures:
            raise self.clone_failures.pop(0)
        if self.clone_delay:
            await asyncio.sleep(self.clone_delay)
        if self.during_clone is not None:
            self.during_clone()
        if template not in self.databases:
            raise PermanentError(f"template {template} does not exist")
        if target in self.databases:
            raise PermanentError(f"database {target} already exists")
        # CREATE DATABASE … TEMPLATE does not copy the template's comment.
        self.databases[target] = None

    async def mark(self, name: str, marker: Marker) -> None:
        self.mark_calls.append((name, marker))
        if name not in self.databases:
            raise PermanentError(f"database {name} does not exist")
        self.databases[name] = marker

    async def rename(self, old: str, new: str) -> None:
        self.rename_calls.append((old, new))
        if self.rename_failures:
            raise self.rename_failures.pop(0)
        if old not in self.databases:
            raise PermanentError(f"database {old} does not exist")
        if new in self.databases:
            raise PermanentError(f"database {new} already exists")
        self.databases[new] = self.databases.pop(old)


class Recorder:
    def __init__(self) -> None:
        self.events: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.events.append(message)

    def of(self, kind: type[Message]) -> list[Message]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def outcomes(self) -> list[Message]:
        return [e for e in self.events if isinstance(e, InstanceCreated | InstanceCreateFailed)]


def _command(template: str | None = TEMPLATE, database: str = TARGET) -> InstanceRequested:
    return InstanceRequested(
        job_id=uuid.uuid4(),
        instance_id=INSTANCE_ID,
        tenant="tenant1",
        operation=Operation.CREATE,
        database_name=database,
        database_template=template,
    )


def _provisioner(
    server: FakeOdsServer,
    emit: Recorder,
    *,
    retry_attempts: int = 5,
    heartbeat_interval: float = 10.0,
) -> Provisioner:
    return Provisioner(
        server,
        emit,
        worker="worker-1",
        retry_attempts=retry_attempts,
        retry_max_wait=0.01,
        heartbeat_interval=heartbeat_interval,
    )


@pytest.fixture
def server() -> FakeOdsServer:
    return FakeOdsServer({TEMPLATE: None, "postgres": None})


@pytest.fixture
def emit() -> Recorder:
    return Recorder()


def _assert_single_failure(emit: Recorder, cmd: InstanceRequested) -> InstanceCreateFailed:
    assert len(emit.outcomes) == 1
    failed = emit.events[-1]
    assert isinstance(failed, InstanceCreateFailed)
    assert failed.job_id == cmd.job_id
    assert failed.instance_id == cmd.instance_id
    assert failed.database_name == cmd.database_name
    return failed


# --- a new database ----------------------------------------------------------------------------


async def test_create_emits_started_progress_and_one_created_last(
    server: FakeOdsServer, emit: Recorder
) -> None:
    cmd = _command()

    await _provisioner(server, emit).handle(cmd, attempt=3)

    first = emit.events[0]
    assert isinstance(first, InstanceOperationStarted)
    assert first.attempt == 3
    assert first.worker == "worker-1"
    assert first.operation is Operation.CREATE
    assert emit.of(InstanceOperationProgress), "expected progress events"
    assert all(isinstance(e, InstanceOperationProgress) for e in emit.events[1:-1])
    assert len(emit.outcomes) == 1
    last = emit.events[-1]
    assert isinstance(last, InstanceCreated)
    assert last.database_name == TARGET
    for event in emit.events:
        assert event.job_id == cmd.job_id
        assert event.instance_id == cmd.instance_id
        assert event.tenant == cmd.tenant


async def test_progress_percentages_never_go_backwards(
    server: FakeOdsServer, emit: Recorder
) -> None:
    await _provisioner(server, emit).handle(_command(), attempt=1)

    percents = [e.percent for e in emit.events if isinstance(e, InstanceOperationProgress)]
    assert percents == sorted(percents)


async def test_created_database_is_marked_for_the_instance_and_no_staging_is_left(
    server: FakeOdsServer, emit: Recorder
) -> None:
    cmd = _command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    assert server.databases[TARGET] == Marker(INSTANCE_ID, cmd.job_id)
    assert staging_name(cmd.job_id) not in server.databases
    assert set(server.databases) == {TEMPLATE, "postgres", TARGET}
    assert server.clone_calls == [(TEMPLATE, staging_name(cmd.job_id))]
    assert server.databases[TEMPLATE] is None, "the template must not be marked"


async def test_clone_is_built_under_a_staging_name_then_renamed(
    server: FakeOdsServer, emit: Recorder
) -> None:
    cmd = _command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    staging = staging_name(cmd.job_id)
    assert server.clone_calls == [(TEMPLATE, staging)]
    assert server.mark_calls == [(staging, Marker(INSTANCE_ID, cmd.job_id))]
    assert server.rename_calls == [(staging, TARGET)]
    assert server.slots_in_use == 0, "the clone slot must be released"


# --- redelivery and recovery -------------------------------------------------------------------


async def test_redelivery_after_success_reports_created_without_cloning_again(
    server: FakeOdsServer, emit: Recorder
) -> None:
    cmd = _command()
    provisioner = _provisioner(server, emit)
    await provisioner.handle(cmd, attempt=1)
    server.clone_calls.clear()
    emit.events.clear()

    await provisioner.handle(cmd, attempt=2)

    assert server.clone_calls == []
    assert len(emit.outcomes) == 1
    assert isinstance(emit.events[-1], InstanceCreated)
    assert server.databases[TARGET] == Marker(INSTANCE_ID, cmd.job_id)


async def test_target_already_marked_for_this_instance_is_reported_created(
    emit: Recorder,
) -> None:
    earlier_job = uuid.uuid4()
    server = FakeOdsServer({TEMPLATE: None, TARGET: Marker(INSTANCE_ID, earlier_job)})

    await _provisioner(server, emit).handle(_command(), attempt=1)

    assert isinstance(emit.events[-1], InstanceCreated)
    assert len(emit.outcomes) == 1
    assert server.clone_calls == []
    assert server.rename_calls == []


async def test_leftover_staging_database_is_completed_without_cloning_again(
    server: FakeOdsServer, emit: Recorder
) -> None:
    cmd = _command()
    staging = staging_name(cmd.job_id)
    server.databases[staging] = None  # a crashed attempt cloned but did not mark or rename

    await _provisioner(server, emit).handle(cmd, attempt=2)

    assert server.clone_calls == []
    assert isinstance(emit.events[-1], InstanceCreated)
    assert server.databases[TARGET] == Marker(INSTANCE_ID, cmd.job_id)
    assert staging not in server.databases


async def test_leftover_marked_staging_database_is_renamed_into_place(
    server: FakeOdsServer, emit: Recorder
) -> None:
    cmd = _command()
    staging = staging_name(cmd.job_id)
    server.databases[staging] = Marker(INSTANCE_ID, cmd.job_id)

    await _provisioner(server, emit).handle(cmd, attempt=2)

    assert server.clone_calls == []
    assert server.rename_calls == [(staging, TARGET)]
    assert isinstance(emit.events[-1], InstanceCreated)


# --- databases that are not ours ---------------------------------------------------------------


@pytest.mark.parametrize(
    "foreign_marker",
    [None, Marker(INSTANCE_ID + 1, uuid.uuid4())],
    ids=["unmarked", "other-instance"],
)
async def test_existing_database_not_ours_fails_once_and_is_left_untouched(
    emit: Recorder, foreign_marker: Marker | None
) -> None:
    server = FakeOdsServer({TEMPLATE: None, TARGET: foreign_marker})
    before = dict(server.databases)
    cmd = _command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    failed = _assert_single_failure(emit, cmd)
    assert TARGET in failed.reason
    assert server.databases == before
    assert server.clone_calls == []
    assert server.mark_calls == []
    assert server.rename_calls == []


async def test_target_appearing_during_the_clone_fails_and_keeps_both_databases(
    server: FakeOdsServer, emit: Recorder
) -> None:
    cmd = _command()
    intruder = Marker(INSTANCE_ID + 5, uuid.uuid4())

    def someone_else_creates_the_target() -> None:
        server.databases[TARGET] = intruder

    server.during_clone = someone_else_creates_the_target

    await _provisioner(server, emit).handle(cmd, attempt=1)

    failed = _assert_single_failure(emit, cmd)
    assert TARGET in failed.reason
    assert server.databases[TARGET] == intruder
    assert server.rename_calls == []
    assert len(server.clone_calls) == 1


async def test_missing_template_fails_naming_the_template(emit: Recorder) -> None:
    server = FakeOdsServer({"postgres": None})
    cmd = _command(template="EdFi_Ods_Nonexistent_Template")

    await _provisioner(server, emit).handle(cmd, attempt=1)

    failed = _assert_single_failure(emit, cmd)
    assert "EdFi_Ods_Nonexistent_Template" in failed.reason
    assert server.clone_calls == []
    assert set(server.databases) == {"postgres"}


async def test_command_without_template_fails(server: FakeOdsServer, emit: Recorder) -> None:
    cmd = _command(template=None)

    await _provisioner(server, emit).handle(cmd, attempt=1)

    _assert_single_failure(emit, cmd)
    assert server.clone_calls == []


# --- transient and permanent step failures -----------------------------------------------------


async def test_transient_clone_failures_are_retried_until_created(
    server: FakeOdsServer, emit: Recorder
) -> None:
    server.clone_failures = [TransientError("template in use"), TransientError("template in use")]
    cmd = _command()

    await _provisioner(server, emit, retry_attempts=5).handle(cmd, attempt=1)

    assert len(server.clone_calls) == 3
    assert len(emit.outcomes) == 1
    assert isinstance(emit.events[-1], InstanceCreated)
    assert len(emit.of(InstanceOperationStarted)) == 1
    assert server.databases[TARGET] == Marker(INSTANCE_ID, cmd.job_id)


async def test_transient_failure_after_the_clone_does_not_clone_again(
    server: FakeOdsServer, emit: Recorder
) -> None:
    server.rename_failures = [TransientError("connection lost")]
    cmd = _command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    assert len(server.clone_calls) == 1
    assert len(server.rename_calls) == 2
    assert isinstance(emit.events[-1], InstanceCreated)
    assert server.databases[TARGET] == Marker(INSTANCE_ID, cmd.job_id)
    assert staging_name(cmd.job_id) not in server.databases


async def test_transient_failure_forever_fails_once_after_the_configured_tries(
    server: FakeOdsServer, emit: Recorder
) -> None:
    server.clone_failures = [TransientError(f"template in use ({i})") for i in range(100)]
    cmd = _command()

    await _provisioner(server, emit, retry_attempts=4).handle(cmd, attempt=1)

    assert len(server.clone_calls) == 4
    failed = _assert_single_failure(emit, cmd)
    assert "template in use" in failed.reason
    assert not emit.of(InstanceCreated)
    assert TARGET not in server.databases


async def test_permanent_failure_is_not_retried(server: FakeOdsServer, emit: Recorder) -> None:
    server.clone_failures = [PermanentError("permission denied to create database")]
    cmd = _command()

    await _provisioner(server, emit, retry_attempts=5).handle(cmd, attempt=1)

    assert len(server.clone_calls) == 1
    failed = _assert_single_failure(emit, cmd)
    assert "permission denied" in failed.reason


# --- heartbeat ---------------------------------------------------------------------------------


async def test_long_clone_sends_heartbeats_and_none_after_the_outcome(
    server: FakeOdsServer, emit: Recorder
) -> None:
    server.clone_delay = 0.2
    cmd = _command()

    await _provisioner(server, emit, heartbeat_interval=0.02).handle(cmd, attempt=1)
    events_at_outcome = len(emit.events)
    await asyncio.sleep(0.1)

    cloning = [
        e
        for e in emit.events
        if isinstance(e, InstanceOperationProgress) and e.message.startswith("Cloning")
    ]
    assert len(cloning) >= 3, "expected the clone progress plus heartbeats while it ran"
    assert len(emit.events) == events_at_outcome, "heartbeats continued after the outcome"
    assert isinstance(emit.events[-1], InstanceCreated)
