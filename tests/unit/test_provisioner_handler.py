"""The provisioner's create, rename and delete, against an in-memory ODS server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

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
)
from services.provisioner.handler import Provisioner
from services.rules.errors import PermanentError, TransientError
from services.rules.marker import Marker, staging_name
from services.rules.states import Claimed
from services.runtime.ods_server import DatabaseInfo, OnProgress, OnWait

TEMPLATE = "EdFi_Ods_Minimal_Template"
TARGET = "EdFi_Ods_Grand_Bend"
OLD = "EdFi_Ods_Grand_Bend"
NEW = "EdFi_Ods_Grand_Bend_North"
NEW_NAME = "Grand Bend North"
INSTANCE_ID = 17
OTHER_INSTANCE_ID = INSTANCE_ID + 1
TENANT = "tenant1"
# Databases that are not the instance's: unmarked, another instance's, and the same instance id
# in another tenant, or with no tenant (tenants sharing a server number their instances alike).
FOREIGN_MARKERS = [
    None,
    Marker(OTHER_INSTANCE_ID, uuid.uuid4(), TENANT),
    Marker(INSTANCE_ID, uuid.uuid4(), "tenant2"),
    Marker(INSTANCE_ID, uuid.uuid4()),
]
FOREIGN_IDS = ["unmarked", "other-instance", "other-tenant", "no-tenant"]

OutcomeT = TypeVar("OutcomeT", bound=Message)


# --- the fake ODS server -----------------------------------------------------------------------


@dataclass
class FakeDatabase:
    """One database: its ownership marker (the comment), ALLOW_CONNECTIONS and open sessions."""

    marker: Marker | None = None
    allow_connections: bool = True
    connections: set[str] = field(default_factory=set)
    # False: a SQL Server restore that never finished (RESTORING).
    online: bool = True


class FakeOdsServer:
    """An ODS server as a dict of database name -> FakeDatabase.

    Behaves like PostgreSQL where the handler depends on it: CREATE DATABASE … TEMPLATE does
    not copy the comment and is refused while someone is connected to the template; ALTER …
    RENAME keeps the comment and ALLOW_CONNECTIONS and is refused while sessions are open;
    DROP … IF EXISTS WITH (FORCE) ends sessions itself. Every call through a session is
    logged in `calls`, in order.
    """

    def __init__(self, databases: dict[str, Marker | None] | None = None) -> None:
        self.databases: dict[str, FakeDatabase] = {
            name: FakeDatabase(marker) for name, marker in (databases or {}).items()
        }
        self.calls: list[tuple[object, ...]] = []
        # Raised by the named operation before it does anything (one per call, in order).
        self.failures: dict[str, list[Exception]] = {}
        # The named operation takes effect, then the connection is lost (a TransientError, and
        # the session is unusable afterwards).
        self.connection_lost_after: set[str] = set()
        # Raised when a session is opened (one per attempt, in order).
        self.session_failures: list[Exception] = []
        self.entered: list[int] = []  # the instance id of each session, once its lock is held
        self.sessions: list[FakeOdsSession] = []
        self.slots_in_use = 0
        self.clone_delay = 0.0
        self.during_clone: Callable[[], None] | None = None
        # Percentages a clone reports while it runs (SQL Server's restores do).
        self.clone_progress: list[float] = []
        self._locks: dict[int, asyncio.Lock] = {}

    def fail(self, operation: str, *errors: Exception) -> None:
        self.failures.setdefault(operation, []).extend(errors)

    def connect(self, name: str, client: str) -> None:
        """A client (e.g. the ODS API) opens a session on a database."""
        database = self.databases[name]
        assert database.allow_connections, f"{name} does not allow connections"
        database.connections.add(client)

    def marker(self, name: str) -> Marker | None:
        return self.databases[name].marker

    def of(self, operation: str) -> list[tuple[object, ...]]:
        return [call[1:] for call in self.calls if call[0] == operation]

    @property
    def clone_calls(self) -> list[tuple[object, ...]]:
        return self.of("clone")

    @property
    def mark_calls(self) -> list[tuple[object, ...]]:
        return self.of("mark")

    @property
    def rename_calls(self) -> list[tuple[object, ...]]:
        return self.of("rename")

    @property
    def changes(self) -> list[tuple[object, ...]]:
        """Every call that would change the server (everything but looking a database up)."""
        return [call for call in self.calls if call[0] != "database"]

    @asynccontextmanager
    async def session(
        self, instance_id: int, *, scope: str = "", on_wait: OnWait | None = None
    ) -> AsyncIterator[FakeOdsSession]:
        if self.session_failures:
            raise self.session_failures.pop(0)
        lock = self._locks.setdefault(instance_id, asyncio.Lock())
        if lock.locked() and on_wait is not None:
            await on_wait("another session")
        async with lock:
            self.entered.append(instance_id)
            session = FakeOdsSession(self)
            self.sessions.append(session)
            try:
                yield session
            finally:
                session.ended = True
                for held in session.held:
                    held.release()

    def lock_held(self, instance_id: int) -> bool:
        lock = self._locks.get(instance_id)
        return lock is not None and lock.locked()

    @asynccontextmanager
    async def clone_slot(self) -> AsyncIterator[int]:
        self.slots_in_use += 1
        try:
            yield 0
        finally:
            self.slots_in_use -= 1


class FakeOdsSession:
    def __init__(self, server: FakeOdsServer) -> None:
        self._server = server
        self.ended = False
        self.broken = False
        self.held: list[asyncio.Lock] = []  # other instances' locks (a copy's source)

    async def also_hold(self, instance_id: int, on_wait: OnWait | None = None) -> None:
        lock = self._server._locks.setdefault(instance_id, asyncio.Lock())
        if lock.locked() and on_wait is not None:
            await on_wait("another session")
        await lock.acquire()
        self.held.append(lock)

    def _begin(self, operation: str, *args: object) -> None:
        assert not self.ended, f"{operation} called on a session that has ended"
        if self.broken:
            raise TransientError("the connection to the server was lost")
        self._server.calls.append((operation, *args))
        failures = self._server.failures.get(operation)
        if failures:
            raise failures.pop(0)

    def _end(self, operation: str) -> None:
        if operation in self._server.connection_lost_after:
            self._server.connection_lost_after.discard(operation)
            self.broken = True
            raise TransientError("the connection to the server was lost")

    def _existing(self, name: str) -> FakeDatabase:
        if name not in self._server.databases:
            raise PermanentError(f'database "{name}" does not exist')
        return self._server.databases[name]

    async def database(self, name: str) -> DatabaseInfo | None:
        self._begin("database", name)
        found = self._server.databases.get(name)
        return None if found is None else DatabaseInfo(name, found.marker, online=found.online)

    async def databases(self, names: list[str]) -> dict[str, DatabaseInfo | None]:
        return {name: await self.database(name) for name in names}

    async def staging_of(
        self, tenant: str | None, instance_id: int, deployment: str | None = None
    ) -> list[str]:
        return [
            name
            for name, db in self._server.databases.items()
            if name.startswith("edfi_im_staging_")
            and db.marker is not None
            and db.marker.names(tenant, instance_id, deployment)
        ]

    async def clone(
        self,
        template: str,
        target: str,
        *,
        end_sessions: bool = False,
        on_progress: OnProgress | None = None,
    ) -> None:
        if end_sessions and template in self._server.databases:
            self._server.calls.append(("end_sessions", template))
            self._server.databases[template].connections.clear()
        self._begin("clone", template, target)
        for percent in self._server.clone_progress:
            assert on_progress is not None
            await on_progress(percent)
        assert self._server.slots_in_use == 1, "clone must run while holding a clone slot"
        if self._server.clone_delay:
            await asyncio.sleep(self._server.clone_delay)
        if self._server.during_clone is not None:
            self._server.during_clone()
        source = self._existing(template)
        if source.connections:
            raise TransientError(f'source database "{template}" is being accessed by other users')
        if target in self._server.databases:
            raise PermanentError(f'database "{target}" already exists')
        self._server.databases[target] = FakeDatabase()  # the comment is not copied
        self._end("clone")

    async def mark(self, name: str, marker: Marker) -> None:
        self._begin("mark", name, marker)
        self._existing(name).marker = marker
        self._end("mark")

    async def rename(self, old: str, new: str) -> None:
        self._begin("rename", old, new)
        database = self._existing(old)
        if new in self._server.databases:
            raise PermanentError(f'database "{new}" already exists')
        if database.connections:
            raise TransientError(f'database "{old}" is being accessed by other users')
        self._server.databases[new] = self._server.databases.pop(old)
        self._end("rename")

    async def drop(self, name: str) -> None:
        self._begin("drop", name)
        self._server.databases.pop(name, None)
        self._end("drop")

    async def close_connections(self, name: str) -> None:
        self._begin("close_connections", name)
        database = self._existing(name)
        database.allow_connections = False
        database.connections.clear()
        self._end("close_connections")

    async def allow_connections(self, name: str) -> None:
        self._begin("allow_connections", name)
        self._existing(name).allow_connections = True
        self._end("allow_connections")


# --- helpers -----------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.events.append(message)

    def of(self, kind: type[Message]) -> list[Message]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def outcomes(self) -> list[Message]:
        return [e for e in self.events if type(e) in OUTCOMES]


def _command(
    template: str | None = TEMPLATE, database: str = TARGET, instance_id: int = INSTANCE_ID
) -> InstanceRequested:
    return InstanceRequested(
        job_id=uuid.uuid4(),
        instance_id=instance_id,
        tenant=TENANT,
        operation=Operation.CREATE,
        database_name=database,
        database_template=template,
    )


def _rename_command(
    old: str = OLD,
    new: str | None = NEW,
    new_name: str | None = NEW_NAME,
    instance_id: int = INSTANCE_ID,
) -> InstanceRequested:
    return InstanceRequested(
        job_id=uuid.uuid4(),
        instance_id=instance_id,
        tenant=TENANT,
        operation=Operation.RENAME,
        database_name=old,
        new_name=new_name,
        new_database_name=new,
    )


def _delete_command(
    name: str = TARGET, expect_database: bool = True, instance_id: int = INSTANCE_ID
) -> InstanceRequested:
    return InstanceRequested(
        job_id=uuid.uuid4(),
        instance_id=instance_id,
        tenant=TENANT,
        operation=Operation.DELETE,
        database_name=name,
        expect_database=expect_database,
    )


def _ours(instance_id: int = INSTANCE_ID) -> Marker:
    """A marker written by an earlier job (the create) for the instance."""
    return Marker(instance_id, uuid.uuid4(), TENANT)


def _provisioner(
    server: FakeOdsServer,
    emit: Recorder,
    *,
    retry_attempts: int = 5,
    heartbeat_interval: float = 10.0,
    progress_delay: float = 0.0,
    **extra: Any,
) -> Provisioner:
    return Provisioner(
        server,
        emit,
        worker="worker-1",
        retry_attempts=retry_attempts,
        retry_max_wait=0.01,
        heartbeat_interval=heartbeat_interval,
        progress_delay=progress_delay,
        **extra,
    )


@pytest.fixture
def server() -> FakeOdsServer:
    return FakeOdsServer({TEMPLATE: None, "postgres": None})


@pytest.fixture
def emit() -> Recorder:
    return Recorder()


def _only_outcome(emit: Recorder, cmd: InstanceRequested, kind: type[OutcomeT]) -> OutcomeT:
    """Exactly one outcome was published, it is the last event, and it is a `kind`."""
    assert len(emit.outcomes) == 1, f"expected one outcome, got {emit.outcomes}"
    last = emit.events[-1]
    assert isinstance(last, kind), f"expected {kind.__name__} last, got {last!r}"
    for event in emit.events:
        assert event.job_id == cmd.job_id
        assert event.instance_id == cmd.instance_id
        assert event.tenant == cmd.tenant
    return last


def _assert_single_failure(emit: Recorder, cmd: InstanceRequested) -> InstanceCreateFailed:
    failed = _only_outcome(emit, cmd, InstanceCreateFailed)
    assert failed.database_name == cmd.database_name
    return failed


def _successful_scenario(operation: Operation, instance_id: int) -> FakeOdsServer:
    """A server on which `operation` for `instance_id` succeeds."""
    if operation is Operation.CREATE:
        return FakeOdsServer({TEMPLATE: None, "postgres": None})
    return FakeOdsServer({TEMPLATE: None, TARGET: _ours(instance_id)})


def _command_for(operation: Operation, instance_id: int = INSTANCE_ID) -> InstanceRequested:
    if operation is Operation.CREATE:
        return _command(instance_id=instance_id)
    if operation is Operation.RENAME:
        return _rename_command(instance_id=instance_id)
    return _delete_command(instance_id=instance_id)


SUCCESS: dict[Operation, type[Message]] = {
    Operation.CREATE: InstanceCreated,
    Operation.RENAME: InstanceRenamed,
    Operation.DELETE: InstanceDeleted,
}
FAILURE: dict[Operation, type[Message]] = {
    Operation.CREATE: InstanceCreateFailed,
    Operation.RENAME: InstanceRenameFailed,
    Operation.DELETE: InstanceDeleteFailed,
}
# The step of each operation that changes the server and can fail transiently.
MAIN_STEP = {Operation.CREATE: "clone", Operation.RENAME: "rename", Operation.DELETE: "drop"}

ALL_OPERATIONS = pytest.mark.parametrize("operation", list(Operation), ids=lambda o: o.value)


# --- every operation: events, session and lock -------------------------------------------------


@ALL_OPERATIONS
async def test_operation_emits_started_first_then_progress_then_one_outcome_last(
    operation: Operation, emit: Recorder
) -> None:
    server = _successful_scenario(operation, INSTANCE_ID)
    cmd = _command_for(operation)

    await _provisioner(server, emit).handle(cmd, attempt=3)

    first = emit.events[0]
    assert isinstance(first, InstanceOperationStarted)
    assert first.attempt == 3
    assert first.worker == "worker-1"
    assert first.operation is operation
    assert emit.of(InstanceOperationProgress), "expected progress events"
    assert all(isinstance(e, InstanceOperationProgress) for e in emit.events[1:-1])
    assert all(
        e.operation is operation for e in emit.events if isinstance(e, InstanceOperationProgress)
    )
    _only_outcome(emit, cmd, SUCCESS[operation])


@ALL_OPERATIONS
async def test_progress_percentages_never_go_backwards(
    operation: Operation, emit: Recorder
) -> None:
    server = _successful_scenario(operation, INSTANCE_ID)
    cmd = _command_for(operation)

    await _provisioner(server, emit).handle(cmd, attempt=1)

    percents = [e.percent for e in emit.events if isinstance(e, InstanceOperationProgress)]
    assert percents == sorted(percents)
    _only_outcome(emit, cmd, SUCCESS[operation])


@ALL_OPERATIONS
async def test_operation_runs_in_one_session_for_the_commands_instance(
    operation: Operation, emit: Recorder
) -> None:
    instance_id = 4242
    server = _successful_scenario(operation, instance_id)
    cmd = _command_for(operation, instance_id)

    await _provisioner(server, emit).handle(cmd, attempt=1)

    assert server.entered == [instance_id]
    assert all(session.ended for session in server.sessions), "the session must be released"
    assert not server.lock_held(instance_id)
    _only_outcome(emit, cmd, SUCCESS[operation])


@ALL_OPERATIONS
async def test_started_is_emitted_once_when_a_transient_error_retries_in_a_new_session(
    operation: Operation, emit: Recorder
) -> None:
    server = _successful_scenario(operation, INSTANCE_ID)
    server.fail(MAIN_STEP[operation], TransientError("connection reset"))
    cmd = _command_for(operation)

    await _provisioner(server, emit).handle(cmd, attempt=1)

    assert server.entered == [INSTANCE_ID, INSTANCE_ID], "each try needs its own session"
    assert len(server.sessions) == 2
    assert server.sessions[0] is not server.sessions[1]
    assert len(server.of(MAIN_STEP[operation])) == 2
    assert len(emit.of(InstanceOperationStarted)) == 1
    assert isinstance(emit.events[0], InstanceOperationStarted)
    _only_outcome(emit, cmd, SUCCESS[operation])


@ALL_OPERATIONS
async def test_started_is_not_emitted_until_the_instance_lock_is_held(
    operation: Operation, emit: Recorder
) -> None:
    server = _successful_scenario(operation, INSTANCE_ID)
    cmd = _command_for(operation)

    async with server.session(INSTANCE_ID):  # another operation on the instance is running
        task = asyncio.create_task(_provisioner(server, emit).handle(cmd, attempt=1))
        await asyncio.sleep(0.05)
        # Only why it waits is published (a waiting job is never silent), nothing else.
        assert [type(e) for e in emit.events] == [InstanceOperationProgress]
        waiting = emit.events[0]
        assert isinstance(waiting, InstanceOperationProgress)
        assert "Waiting for instance 17's lock" in waiting.message
        assert "held by another session" in waiting.message
        assert server.calls == [], "the server must not be touched before the lock is held"
        assert not task.done()
    await asyncio.wait_for(task, timeout=5)

    assert server.entered == [INSTANCE_ID, INSTANCE_ID]
    assert isinstance(emit.events[1], InstanceOperationStarted)
    _only_outcome(emit, cmd, SUCCESS[operation])


@ALL_OPERATIONS
async def test_other_instances_are_not_held_up_by_a_lock(
    operation: Operation, emit: Recorder
) -> None:
    server = _successful_scenario(operation, INSTANCE_ID)
    cmd = _command_for(operation)

    async with server.session(OTHER_INSTANCE_ID):
        await asyncio.wait_for(_provisioner(server, emit).handle(cmd, attempt=1), timeout=5)

    _only_outcome(emit, cmd, SUCCESS[operation])


@ALL_OPERATIONS
async def test_transient_failure_opening_the_session_is_retried_and_started_once(
    operation: Operation, emit: Recorder
) -> None:
    server = _successful_scenario(operation, INSTANCE_ID)
    server.session_failures = [TransientError("database server unreachable")] * 2
    cmd = _command_for(operation)

    await _provisioner(server, emit).handle(cmd, attempt=1)

    assert server.entered == [INSTANCE_ID]
    assert len(emit.of(InstanceOperationStarted)) == 1
    # The two failed tries are reported (the job shows them), then the operation starts.
    assert [type(e) for e in emit.events[:3]] == [
        InstanceOperationRetrying,
        InstanceOperationRetrying,
        InstanceOperationStarted,
    ]
    _only_outcome(emit, cmd, SUCCESS[operation])


@ALL_OPERATIONS
async def test_session_that_never_opens_fails_once_without_started(
    operation: Operation, emit: Recorder
) -> None:
    server = _successful_scenario(operation, INSTANCE_ID)
    server.session_failures = [
        TransientError(f"database server unreachable ({i})") for i in range(9)
    ]
    cmd = _command_for(operation)

    await _provisioner(server, emit, retry_attempts=3).handle(cmd, attempt=1)

    assert len(server.session_failures) == 6, "expected exactly the configured 3 tries"
    assert server.calls == []
    assert not emit.of(InstanceOperationStarted), "Started means the instance's lock was held"
    failed = _only_outcome(emit, cmd, FAILURE[operation])
    assert "unreachable" in getattr(failed, "reason", "")


# --- create: a new database --------------------------------------------------------------------


async def test_created_database_is_marked_for_the_instance_and_no_staging_is_left(
    server: FakeOdsServer, emit: Recorder
) -> None:
    cmd = _command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    created = _only_outcome(emit, cmd, InstanceCreated)
    assert created.database_name == TARGET
    assert server.marker(TARGET) == Marker(INSTANCE_ID, cmd.job_id, TENANT)
    assert server.databases[TARGET].allow_connections
    assert staging_name(cmd.job_id) not in server.databases
    assert set(server.databases) == {TEMPLATE, "postgres", TARGET}
    assert server.clone_calls == [(TEMPLATE, staging_name(cmd.job_id))]
    assert server.marker(TEMPLATE) is None, "the template must not be marked"


async def test_clone_is_built_under_a_staging_name_then_renamed(
    server: FakeOdsServer, emit: Recorder
) -> None:
    cmd = _command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    staging = staging_name(cmd.job_id)
    assert server.clone_calls == [(TEMPLATE, staging)]
    assert server.mark_calls == [(staging, Marker(INSTANCE_ID, cmd.job_id, TENANT))]
    assert server.rename_calls == [(staging, TARGET)]
    assert server.slots_in_use == 0, "the clone slot must be released"
    _only_outcome(emit, cmd, InstanceCreated)


# --- create: redelivery and recovery -----------------------------------------------------------


async def test_redelivery_after_success_reports_created_without_cloning_again(
    server: FakeOdsServer, emit: Recorder
) -> None:
    cmd = _command()
    provisioner = _provisioner(server, emit)
    await provisioner.handle(cmd, attempt=1)
    server.calls.clear()
    emit.events.clear()

    await provisioner.handle(cmd, attempt=2)

    assert server.clone_calls == []
    _only_outcome(emit, cmd, InstanceCreated)
    assert server.marker(TARGET) == Marker(INSTANCE_ID, cmd.job_id, TENANT)


async def test_target_already_marked_for_this_instance_is_reported_created(
    emit: Recorder,
) -> None:
    server = FakeOdsServer({TEMPLATE: None, TARGET: _ours()})
    cmd = _command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    _only_outcome(emit, cmd, InstanceCreated)
    assert server.clone_calls == []
    assert server.rename_calls == []


async def test_leftover_staging_database_is_completed_without_cloning_again(
    server: FakeOdsServer, emit: Recorder
) -> None:
    cmd = _command()
    staging = staging_name(cmd.job_id)
    server.databases[staging] = FakeDatabase()  # a crashed attempt cloned but did not mark it

    await _provisioner(server, emit).handle(cmd, attempt=2)

    assert server.clone_calls == []
    _only_outcome(emit, cmd, InstanceCreated)
    assert server.marker(TARGET) == Marker(INSTANCE_ID, cmd.job_id, TENANT)
    assert staging not in server.databases


async def test_unfinished_restore_of_an_earlier_attempt_is_dropped_and_cloned_again(
    server: FakeOdsServer, emit: Recorder
) -> None:
    cmd = _command()
    staging = staging_name(cmd.job_id)
    server.databases[staging] = FakeDatabase(online=False)  # a crash left it RESTORING

    await _provisioner(server, emit).handle(cmd, attempt=2)

    assert ("drop", staging) in server.changes
    assert server.clone_calls == [(TEMPLATE, staging)]
    _only_outcome(emit, cmd, InstanceCreated)
    assert server.marker(TARGET) == Marker(INSTANCE_ID, cmd.job_id, TENANT)


async def test_a_long_clone_reports_how_far_it_has_got(
    server: FakeOdsServer, emit: Recorder
) -> None:
    server.clone_progress = [20.0, 60.0]
    cmd = _command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    steps = [e.message for e in emit.of(InstanceOperationProgress)]  # type: ignore[attr-defined]
    assert f"Cloning {TEMPLATE}: 20 %" in steps
    assert f"Cloning {TEMPLATE}: 60 %" in steps
    _only_outcome(emit, cmd, InstanceCreated)


async def test_leftover_marked_staging_database_is_renamed_into_place(
    server: FakeOdsServer, emit: Recorder
) -> None:
    cmd = _command()
    staging = staging_name(cmd.job_id)
    server.databases[staging] = FakeDatabase(Marker(INSTANCE_ID, cmd.job_id, TENANT))

    await _provisioner(server, emit).handle(cmd, attempt=2)

    assert server.clone_calls == []
    assert server.rename_calls == [(staging, TARGET)]
    _only_outcome(emit, cmd, InstanceCreated)


# --- create: databases that are not ours -------------------------------------------------------


@pytest.mark.parametrize(
    "foreign_marker",
    FOREIGN_MARKERS,
    ids=FOREIGN_IDS,
)
async def test_existing_database_not_ours_fails_once_and_is_left_untouched(
    emit: Recorder, foreign_marker: Marker | None
) -> None:
    server = FakeOdsServer({TEMPLATE: None, TARGET: foreign_marker})
    cmd = _command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    failed = _assert_single_failure(emit, cmd)
    assert TARGET in failed.reason
    assert server.databases == {TEMPLATE: FakeDatabase(), TARGET: FakeDatabase(foreign_marker)}
    assert server.changes == []


async def test_target_appearing_during_the_clone_fails_leaves_it_and_drops_its_own_clone(
    server: FakeOdsServer, emit: Recorder
) -> None:
    """The clone is this system's own (named and marked for the job): it is dropped, not left
    behind (issue 14: it leaked); the database that appeared is left alone."""
    cmd = _command()
    intruder = Marker(INSTANCE_ID + 5, uuid.uuid4())

    def someone_else_creates_the_target() -> None:
        server.databases[TARGET] = FakeDatabase(intruder)

    server.during_clone = someone_else_creates_the_target

    await _provisioner(server, emit).handle(cmd, attempt=1)

    failed = _assert_single_failure(emit, cmd)
    assert TARGET in failed.reason and "was dropped" in failed.reason
    assert server.marker(TARGET) == intruder
    assert staging_name(cmd.job_id) not in server.databases
    assert server.of("drop") == [(staging_name(cmd.job_id),)]
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


# --- create: transient and permanent step failures ---------------------------------------------


async def test_transient_clone_failures_are_retried_until_created(
    server: FakeOdsServer, emit: Recorder
) -> None:
    server.fail("clone", TransientError("template in use"), TransientError("template in use"))
    cmd = _command()

    await _provisioner(server, emit, retry_attempts=5).handle(cmd, attempt=1)

    assert len(server.clone_calls) == 3
    assert server.entered == [INSTANCE_ID] * 3
    _only_outcome(emit, cmd, InstanceCreated)
    assert len(emit.of(InstanceOperationStarted)) == 1
    assert server.marker(TARGET) == Marker(INSTANCE_ID, cmd.job_id, TENANT)


async def test_someone_connected_to_the_template_delays_the_clone_until_they_leave(
    server: FakeOdsServer, emit: Recorder
) -> None:
    server.connect(TEMPLATE, "dba")

    def the_dba_leaves_before_the_second_try() -> None:
        if len(server.clone_calls) == 2:
            server.databases[TEMPLATE].connections.discard("dba")

    server.during_clone = the_dba_leaves_before_the_second_try
    cmd = _command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    assert len(server.clone_calls) == 2
    _only_outcome(emit, cmd, InstanceCreated)
    assert server.marker(TARGET) == Marker(INSTANCE_ID, cmd.job_id, TENANT)


async def test_transient_failure_after_the_clone_does_not_clone_again(
    server: FakeOdsServer, emit: Recorder
) -> None:
    server.fail("rename", TransientError("connection lost"))
    cmd = _command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    assert len(server.clone_calls) == 1
    assert len(server.rename_calls) == 2
    _only_outcome(emit, cmd, InstanceCreated)
    assert server.marker(TARGET) == Marker(INSTANCE_ID, cmd.job_id, TENANT)
    assert staging_name(cmd.job_id) not in server.databases


async def test_connection_lost_after_the_final_rename_still_reports_created(
    server: FakeOdsServer, emit: Recorder
) -> None:
    server.connection_lost_after = {"rename"}
    cmd = _command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    assert len(server.clone_calls) == 1
    assert len(server.rename_calls) == 1
    _only_outcome(emit, cmd, InstanceCreated)
    assert server.marker(TARGET) == Marker(INSTANCE_ID, cmd.job_id, TENANT)


async def test_transient_failure_forever_fails_once_after_the_configured_tries(
    server: FakeOdsServer, emit: Recorder
) -> None:
    server.fail("clone", *(TransientError(f"template in use ({i})") for i in range(100)))
    cmd = _command()

    await _provisioner(server, emit, retry_attempts=4).handle(cmd, attempt=1)

    assert len(server.clone_calls) == 4
    failed = _assert_single_failure(emit, cmd)
    assert "template in use" in failed.reason
    assert TARGET not in server.databases


async def test_permanent_failure_is_not_retried(server: FakeOdsServer, emit: Recorder) -> None:
    server.fail("clone", PermanentError("permission denied to create database"))
    cmd = _command()

    await _provisioner(server, emit, retry_attempts=5).handle(cmd, attempt=1)

    assert len(server.clone_calls) == 1
    assert server.entered == [INSTANCE_ID]
    failed = _assert_single_failure(emit, cmd)
    assert "permission denied" in failed.reason


# --- create: heartbeat -------------------------------------------------------------------------


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
    beats = [float(e.message.split("(")[1].split(" s so far")[0]) for e in cloning[1:]]
    assert beats == sorted(beats) and beats[-1] > beats[0], "heartbeats say how long it has run"
    assert all(e.percent == cloning[0].percent for e in cloning)
    assert len(emit.events) == events_at_outcome, "heartbeats continued after the outcome"
    _only_outcome(emit, cmd, InstanceCreated)


@ALL_OPERATIONS
async def test_with_a_progress_delay_a_fast_operation_reports_its_outcome_alone(
    operation: Operation, emit: Recorder
) -> None:
    """Issue 18: a Started nobody could see (the operation ends within the delay) is not sent:
    the outcome says the operation ran (the status service records its start from the claim).
    It used to be Started, then the outcome: a message, a transaction and two changes more for
    every create."""
    server = _successful_scenario(operation, INSTANCE_ID)
    cmd = _command_for(operation)

    await _provisioner(server, emit, progress_delay=0.1).handle(cmd, attempt=1)
    await asyncio.sleep(0.2)  # a Started or step report still pending would have gone by now

    assert [type(e) for e in emit.events] == [SUCCESS[operation]]


async def test_with_a_progress_delay_an_operation_that_lasts_reports_started_once_it_has(
    server: FakeOdsServer, emit: Recorder
) -> None:
    server.clone_delay = 0.4
    cmd = _command()
    sent: list[tuple[float, Message]] = []
    began = time.monotonic()

    class Timed(Recorder):
        async def __call__(self, message: Message) -> None:
            sent.append((time.monotonic() - began, message))
            await super().__call__(message)

    await _provisioner(server, Timed(), progress_delay=0.15).handle(cmd, attempt=1)

    kinds = [type(m) for _, m in sent]
    assert kinds[0] is InstanceOperationStarted and kinds[-1] is InstanceCreated, kinds
    assert kinds.count(InstanceOperationStarted) == 1
    assert sent[0][0] >= 0.15, "Started went out before the delay had passed"
    assert sent[0][1].attempt == 1  # type: ignore[attr-defined]


async def _resumed(job_id: uuid.UUID) -> Claimed:
    return Claimed.RESUMED


async def test_a_later_attempt_announces_itself_at_once_even_with_a_progress_delay(
    server: FakeOdsServer, emit: Recorder
) -> None:
    """An attempt at a job an earlier attempt had claimed (a redelivery, a re-drive) sends its
    Started at once, as before: every attempt after the first is counted and seen."""
    cmd = _command()

    await _provisioner(server, emit, claim=_resumed, progress_delay=0.2).handle(cmd, attempt=2)

    assert [type(e) for e in emit.events] == [InstanceOperationStarted, InstanceCreated]
    assert emit.events[0].attempt == 2  # type: ignore[attr-defined]


async def test_a_command_given_up_within_the_progress_delay_sends_nothing(
    server: FakeOdsServer, emit: Recorder
) -> None:
    cmd, fence = _command(), Fence(live=False)

    await _provisioner(server, emit, fence=fence, progress_delay=0.2).handle(cmd, attempt=1)
    await asyncio.sleep(0.3)

    assert emit.events == []


async def test_a_started_already_on_its_way_is_confirmed_before_the_outcome_goes(
    server: FakeOdsServer,
) -> None:
    """Past the delay, Started is sent whatever comes: the outcome waits for its confirm (the
    broker gets the job's events in order), even when the work ends during that send."""
    emit = SlowConfirms(server, delay=0.3)
    server.clone_delay = 0.15
    cmd = _command()

    await _provisioner(server, emit, progress_delay=0.1).handle(cmd, attempt=1)

    assert [type(e) for e in emit.events] == [InstanceOperationStarted, InstanceCreated]
    assert [line.split(" (")[0] for line in emit.log] == [
        "send InstanceOperationStarted",
        "confirmed InstanceOperationStarted",
        "send InstanceCreated",
        "confirmed InstanceCreated",
    ], emit.log
    assert "clone" in [c[0] for c in server.calls], "the work ended during Started's send"


async def test_with_a_progress_delay_a_step_that_lasts_is_reported_before_the_outcome(
    server: FakeOdsServer, emit: Recorder
) -> None:
    server.clone_delay = 0.3
    cmd = _command()

    await _provisioner(server, emit, progress_delay=0.05).handle(cmd, attempt=1)
    events_at_outcome = len(emit.events)
    await asyncio.sleep(0.15)

    steps = [e.message for e in emit.events if isinstance(e, InstanceOperationProgress)]
    assert steps == [f"Cloning {cmd.database_template}"], "only the step that lasted"
    assert isinstance(emit.events[-1], InstanceCreated)
    assert len(emit.events) == events_at_outcome, "a step was reported after the outcome"


# --- rename ------------------------------------------------------------------------------------


async def test_rename_moves_the_marked_database_and_reopens_it_under_the_new_name(
    emit: Recorder,
) -> None:
    marker = _ours()
    server = FakeOdsServer({OLD: marker})
    server.connect(OLD, "ods-api-1")
    server.connect(OLD, "ods-api-2")
    cmd = _rename_command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    renamed = _only_outcome(emit, cmd, InstanceRenamed)
    assert renamed.old_database_name == OLD
    assert renamed.database_name == NEW
    assert renamed.new_name == NEW_NAME
    assert OLD not in server.databases
    assert server.marker(NEW) == marker
    assert server.databases[NEW].allow_connections, "connections must be allowed again"
    assert server.changes == [
        ("close_connections", OLD),
        ("rename", OLD, NEW),
        ("allow_connections", NEW),
    ]


@pytest.mark.parametrize("allowed", [True, False], ids=["reopened", "still-closed"])
async def test_rename_redelivered_after_the_rename_is_reported_renamed(
    emit: Recorder, allowed: bool
) -> None:
    marker = _ours()
    server = FakeOdsServer({NEW: marker})
    # still-closed: the earlier attempt died between the ALTER and reopening the database.
    server.databases[NEW].allow_connections = allowed
    cmd = _rename_command()

    await _provisioner(server, emit).handle(cmd, attempt=2)

    renamed = _only_outcome(emit, cmd, InstanceRenamed)
    assert renamed.database_name == NEW
    assert server.rename_calls == []
    assert server.marker(NEW) == marker
    assert server.databases[NEW].allow_connections


async def test_rename_handled_twice_reports_renamed_both_times(emit: Recorder) -> None:
    server = FakeOdsServer({OLD: _ours()})
    cmd = _rename_command()
    provisioner = _provisioner(server, emit)
    await provisioner.handle(cmd, attempt=1)
    emit.events.clear()

    await provisioner.handle(cmd, attempt=2)

    _only_outcome(emit, cmd, InstanceRenamed)
    assert len(server.rename_calls) == 1
    assert set(server.databases) == {NEW}


async def test_rename_of_a_missing_database_fails_naming_it(emit: Recorder) -> None:
    server = FakeOdsServer({"postgres": None})
    cmd = _rename_command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    failed = _only_outcome(emit, cmd, InstanceRenameFailed)
    assert failed.database_name == OLD
    assert OLD in failed.reason
    assert server.changes == []
    assert set(server.databases) == {"postgres"}


@pytest.mark.parametrize(
    "taken_by",
    FOREIGN_MARKERS,
    ids=FOREIGN_IDS,
)
async def test_rename_onto_a_taken_name_fails_and_the_old_database_stays_connectable(
    emit: Recorder, taken_by: Marker | None
) -> None:
    marker = _ours()
    server = FakeOdsServer({OLD: marker, NEW: taken_by})
    server.connect(OLD, "ods-api-1")
    cmd = _rename_command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    failed = _only_outcome(emit, cmd, InstanceRenameFailed)
    assert failed.database_name == OLD
    assert NEW in failed.reason
    assert server.databases[OLD] == FakeDatabase(marker, True, {"ods-api-1"})
    assert server.databases[NEW] == FakeDatabase(taken_by)
    assert server.rename_calls == []


async def test_rename_onto_a_taken_name_reopens_a_database_an_earlier_attempt_closed(
    emit: Recorder,
) -> None:
    server = FakeOdsServer({OLD: _ours(), NEW: None})
    server.databases[OLD].allow_connections = False  # the earlier attempt died after closing it
    cmd = _rename_command()

    await _provisioner(server, emit).handle(cmd, attempt=2)

    _only_outcome(emit, cmd, InstanceRenameFailed)
    assert server.databases[OLD].allow_connections


async def test_rename_of_a_database_marked_for_another_instance_is_refused(
    emit: Recorder,
) -> None:
    theirs = Marker(OTHER_INSTANCE_ID, uuid.uuid4(), TENANT)
    server = FakeOdsServer({OLD: theirs})
    server.connect(OLD, "their-api")
    cmd = _rename_command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    failed = _only_outcome(emit, cmd, InstanceRenameFailed)
    assert OLD in failed.reason
    assert "another instance" in failed.reason
    assert server.databases == {OLD: FakeDatabase(theirs, True, {"their-api"})}
    assert server.changes == []


async def test_rename_of_an_unmarked_imported_database_is_refused_until_it_is_adopted(
    emit: Recorder,
) -> None:
    """A database another tool made carries no mark: renaming it could end the sessions of (and
    rename) anything a dbo row names (issue 14: the admin database itself). It is refused,
    untouched, until an operator adopts it (`edfi-im adopt`, which marks it)."""
    server = FakeOdsServer({OLD: None})  # created by another Ed-Fi tool, imported
    server.connect(OLD, "ods-api-1")
    cmd = _rename_command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    failed = _only_outcome(emit, cmd, InstanceRenameFailed)
    assert "adopt it first" in failed.reason
    assert server.changes == []
    assert server.databases == {OLD: FakeDatabase(None, True, {"ods-api-1"})}

    server.databases[OLD].marker = _ours()  # adopted
    again, after = _rename_command(), Recorder()
    await _provisioner(server, after).handle(again, attempt=1)
    _only_outcome(after, again, InstanceRenamed)
    assert set(server.databases) == {NEW}


async def test_rename_whose_alter_fails_permanently_leaves_the_old_database_connectable(
    emit: Recorder,
) -> None:
    marker = _ours()
    server = FakeOdsServer({OLD: marker})
    server.fail("rename", PermanentError("must be owner of database"))
    cmd = _rename_command()

    await _provisioner(server, emit, retry_attempts=5).handle(cmd, attempt=1)

    failed = _only_outcome(emit, cmd, InstanceRenameFailed)
    assert "must be owner" in failed.reason
    assert len(server.rename_calls) == 1, "a permanent error must not be retried"
    assert server.databases == {OLD: FakeDatabase(marker, True)}


async def test_rename_whose_alter_fails_transiently_is_retried_until_renamed(
    emit: Recorder,
) -> None:
    server = FakeOdsServer({OLD: _ours()})
    server.fail("rename", TransientError("lock not available"), TransientError("deadlock"))
    cmd = _rename_command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    _only_outcome(emit, cmd, InstanceRenamed)
    assert len(server.rename_calls) == 3
    assert len(emit.of(InstanceOperationStarted)) == 1
    assert set(server.databases) == {NEW}
    assert server.databases[NEW].allow_connections


async def test_rename_failing_transiently_every_try_fails_once_with_the_old_database_connectable(
    emit: Recorder,
) -> None:
    marker = _ours()
    server = FakeOdsServer({OLD: marker})
    server.fail("rename", *(TransientError(f"lock not available ({i})") for i in range(100)))
    cmd = _rename_command()

    await _provisioner(server, emit, retry_attempts=3).handle(cmd, attempt=1)

    failed = _only_outcome(emit, cmd, InstanceRenameFailed)
    assert "lock not available" in failed.reason
    assert len(server.rename_calls) == 3
    assert server.databases == {OLD: FakeDatabase(marker, True)}


async def test_rename_whose_connection_is_lost_after_the_alter_is_reported_renamed(
    emit: Recorder,
) -> None:
    marker = _ours()
    server = FakeOdsServer({OLD: marker})
    server.connection_lost_after = {"rename"}
    cmd = _rename_command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    _only_outcome(emit, cmd, InstanceRenamed)
    assert len(server.rename_calls) == 1
    assert server.databases == {NEW: FakeDatabase(marker, True)}


@pytest.mark.parametrize(
    ("new_database_name", "new_name"),
    [(None, NEW_NAME), (NEW, None)],
    ids=["no-new-database-name", "no-new-name"],
)
async def test_rename_command_without_its_new_names_fails(
    emit: Recorder, new_database_name: str | None, new_name: str | None
) -> None:
    server = FakeOdsServer({OLD: _ours()})
    cmd = _rename_command(new=new_database_name, new_name=new_name)

    await _provisioner(server, emit).handle(cmd, attempt=1)

    _only_outcome(emit, cmd, InstanceRenameFailed)
    assert server.changes == []
    assert server.databases[OLD].allow_connections


# --- delete ------------------------------------------------------------------------------------


@pytest.mark.parametrize("expect_database", [True, False])
async def test_delete_drops_the_database_marked_for_this_instance(
    emit: Recorder, expect_database: bool
) -> None:
    server = FakeOdsServer({TEMPLATE: None, TARGET: _ours()})
    server.connect(TARGET, "ods-api-1")
    cmd = _delete_command(expect_database=expect_database)

    await _provisioner(server, emit).handle(cmd, attempt=1)

    deleted = _only_outcome(emit, cmd, InstanceDeleted)
    assert deleted.dropped is True
    assert deleted.database_name == TARGET
    assert set(server.databases) == {TEMPLATE}
    assert server.of("drop") == [(TARGET,)]


@pytest.mark.parametrize("expect_database", [True, False])
async def test_delete_of_a_database_already_gone_reports_deleted_without_dropping(
    emit: Recorder, expect_database: bool
) -> None:
    server = FakeOdsServer({TEMPLATE: None})
    cmd = _delete_command(expect_database=expect_database)

    await _provisioner(server, emit).handle(cmd, attempt=1)

    deleted = _only_outcome(emit, cmd, InstanceDeleted)
    assert deleted.dropped is False
    assert server.changes == []
    assert set(server.databases) == {TEMPLATE}


async def test_delete_handled_twice_drops_once_and_reports_deleted_both_times(
    emit: Recorder,
) -> None:
    server = FakeOdsServer({TARGET: _ours()})
    cmd = _delete_command()
    provisioner = _provisioner(server, emit)
    await provisioner.handle(cmd, attempt=1)
    emit.events.clear()

    await provisioner.handle(cmd, attempt=2)

    assert _only_outcome(emit, cmd, InstanceDeleted).dropped is False
    assert server.of("drop") == [(TARGET,)]
    assert server.databases == {}


@pytest.mark.parametrize(
    "foreign_marker",
    FOREIGN_MARKERS,
    ids=FOREIGN_IDS,
)
async def test_delete_of_a_database_not_ours_fails_and_leaves_it_untouched(
    emit: Recorder, foreign_marker: Marker | None
) -> None:
    server = FakeOdsServer({TARGET: foreign_marker})
    server.connect(TARGET, "their-api")
    cmd = _delete_command(expect_database=True)

    await _provisioner(server, emit).handle(cmd, attempt=1)

    failed = _only_outcome(emit, cmd, InstanceDeleteFailed)
    assert failed.database_name == TARGET
    assert TARGET in failed.reason
    assert "left untouched" in failed.reason
    assert server.databases == {TARGET: FakeDatabase(foreign_marker, True, {"their-api"})}
    assert server.changes == []


@pytest.mark.parametrize(
    "foreign_marker",
    FOREIGN_MARKERS,
    ids=FOREIGN_IDS,
)
async def test_delete_after_a_failed_create_leaves_a_database_not_ours_and_reports_deleted(
    emit: Recorder, foreign_marker: Marker | None
) -> None:
    server = FakeOdsServer({TARGET: foreign_marker})
    server.connect(TARGET, "their-api")
    cmd = _delete_command(expect_database=False)

    await _provisioner(server, emit).handle(cmd, attempt=1)

    deleted = _only_outcome(emit, cmd, InstanceDeleted)
    assert deleted.dropped is False
    assert server.databases == {TARGET: FakeDatabase(foreign_marker, True, {"their-api"})}
    assert server.changes == []


async def test_delete_whose_drop_fails_transiently_is_retried_until_dropped(
    emit: Recorder,
) -> None:
    server = FakeOdsServer({TARGET: _ours()})
    server.fail("drop", TransientError("lock not available"))
    cmd = _delete_command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    assert _only_outcome(emit, cmd, InstanceDeleted).dropped is True
    assert len(server.of("drop")) == 2
    assert len(emit.of(InstanceOperationStarted)) == 1
    assert server.databases == {}


async def test_delete_whose_connection_is_lost_after_the_drop_is_reported_deleted(
    emit: Recorder,
) -> None:
    server = FakeOdsServer({TARGET: _ours()})
    server.connection_lost_after = {"drop"}
    cmd = _delete_command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    _only_outcome(emit, cmd, InstanceDeleted)
    assert len(server.of("drop")) == 1
    assert server.databases == {}


async def test_delete_whose_drop_fails_permanently_fails_once_and_keeps_the_database(
    emit: Recorder,
) -> None:
    marker = _ours()
    server = FakeOdsServer({TARGET: marker})
    server.fail("drop", PermanentError("must be owner of database"))
    cmd = _delete_command()

    await _provisioner(server, emit, retry_attempts=5).handle(cmd, attempt=1)

    failed = _only_outcome(emit, cmd, InstanceDeleteFailed)
    assert "must be owner" in failed.reason
    assert len(server.of("drop")) == 1
    assert server.marker(TARGET) == marker


async def test_delete_whose_drop_fails_permanently_leaves_the_database_connectable(
    emit: Recorder,
) -> None:
    server = FakeOdsServer({TARGET: _ours()})
    server.fail("drop", PermanentError("must be owner of database"))
    cmd = _delete_command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    _only_outcome(emit, cmd, InstanceDeleteFailed)
    assert server.databases[TARGET].allow_connections


async def test_a_transient_error_is_reported_with_the_try_and_the_error_before_the_retry(
    emit: Recorder,
) -> None:
    server = _successful_scenario(Operation.CREATE, INSTANCE_ID)
    server.fail("clone", TransientError("template busy"), TransientError("template busy"))
    cmd = _command_for(Operation.CREATE)
    await _provisioner(server, emit, retry_attempts=4).handle(cmd, attempt=1)
    retries = [e for e in emit.events if isinstance(e, InstanceOperationRetrying)]
    assert [r.try_number for r in retries] == [1, 2]
    assert all("template busy" in r.error and r.max_tries == 4 for r in retries)
    _only_outcome(emit, cmd, InstanceCreated)


# --- fences: no late execution after a give-up (issue 14) --------------------------------------


class Fence:
    """The admin database's view of the job: whether it may still act, and whether its last
    server step was recorded as done."""

    def __init__(self, live: bool) -> None:
        self.live = live
        self.done: list[uuid.UUID] = []

    @asynccontextmanager
    async def __call__(self, job_id: uuid.UUID) -> AsyncIterator[bool]:
        yield self.live
        if self.live:
            self.done.append(job_id)


async def _ended(job_id: uuid.UUID) -> Claimed:
    return Claimed.ENDED


async def test_an_ended_jobs_command_is_skipped_and_its_own_clone_dropped(emit: Recorder) -> None:
    """A command queued for a job the orphan sweep has given up (its provisioner was down): a
    provisioner that comes back does not carry it out, and drops the clone it had made."""
    cmd = _command()
    staging = staging_name(cmd.job_id)
    server = FakeOdsServer({TEMPLATE: None, staging: Marker(INSTANCE_ID, cmd.job_id, TENANT)})

    await _provisioner(server, emit, claim=_ended).handle(cmd, attempt=1)

    assert emit.events == []
    assert set(server.databases) == {TEMPLATE}
    assert server.of("drop") == [(staging,)]


async def test_a_create_given_up_during_its_clone_drops_the_clone_and_makes_nothing(
    server: FakeOdsServer, emit: Recorder
) -> None:
    cmd, fence = _command(), Fence(live=False)

    await _provisioner(server, emit, fence=fence).handle(cmd, attempt=1)

    assert emit.outcomes == []
    assert TARGET not in server.databases and staging_name(cmd.job_id) not in server.databases
    assert server.rename_calls == []


async def test_a_rename_given_up_before_its_last_step_leaves_the_database_as_it_was(
    emit: Recorder,
) -> None:
    marker = _ours()
    server = FakeOdsServer({OLD: marker})
    server.connect(OLD, "ods-api")
    cmd, fence = _rename_command(), Fence(live=False)

    await _provisioner(server, emit, fence=fence).handle(cmd, attempt=1)

    assert emit.outcomes == []
    assert server.databases == {OLD: FakeDatabase(marker, True, {"ods-api"})}
    assert server.of("close_connections") == [] and server.rename_calls == []


async def test_a_delete_given_up_drops_nothing(emit: Recorder) -> None:
    server = FakeOdsServer({TARGET: _ours()})
    cmd, fence = _delete_command(), Fence(live=False)

    await _provisioner(server, emit, fence=fence).handle(cmd, attempt=1)

    assert emit.outcomes == [] and TARGET in server.databases


@ALL_OPERATIONS
async def test_the_last_server_step_runs_inside_the_fence_and_is_recorded_done(
    operation: Operation, emit: Recorder
) -> None:
    server = _successful_scenario(operation, INSTANCE_ID)
    cmd, fence = _command_for(operation), Fence(live=True)

    await _provisioner(server, emit, fence=fence).handle(cmd, attempt=1)

    _only_outcome(emit, cmd, SUCCESS[operation])
    assert fence.done == [cmd.job_id]


# --- databases that are never this system's (issue 14) -----------------------------------------


def _protected(name: str) -> str | None:
    return "it is an admin database (EdFi_Admin) of this system" if name == OLD else None


async def test_a_protected_database_is_never_renamed_nor_emptied_of_sessions(
    emit: Recorder,
) -> None:
    """Even one marked as the instance's (a dbo row and a marker can both be forged)."""
    server = FakeOdsServer({OLD: _ours()})
    server.connect(OLD, "gateway")
    cmd = _rename_command()

    await _provisioner(server, emit, protected=_protected).handle(cmd, attempt=1)

    failed = _only_outcome(emit, cmd, InstanceRenameFailed)
    assert "admin database" in failed.reason
    assert server.changes == [] and server.databases[OLD].connections == {"gateway"}


async def test_a_protected_database_is_never_dropped(emit: Recorder) -> None:
    server = FakeOdsServer({OLD: _ours()})
    cmd = _delete_command(name=OLD)

    await _provisioner(server, emit, protected=_protected).handle(cmd, attempt=1)

    failed = _only_outcome(emit, cmd, InstanceDeleteFailed)
    assert "never renamed, dropped" in failed.reason
    assert OLD in server.databases and server.of("drop") == []


async def test_a_delete_drops_the_clones_its_failed_create_left(emit: Recorder) -> None:
    """A create that failed after its clone (a crash before it could drop it) left a staging
    database marked for the instance: deleting the instance drops it too, and nothing else."""
    leftover = staging_name(uuid.uuid4())
    stranger = staging_name(uuid.uuid4())
    server = FakeOdsServer({leftover: _ours(), stranger: _ours(OTHER_INSTANCE_ID), TARGET: _ours()})
    cmd = _delete_command()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    _only_outcome(emit, cmd, InstanceDeleted)
    assert set(server.databases) == {stranger}


# --- copy: a create from another instance's database ---------------------------------------------

SOURCE_ID = 7
SOURCE_DB = "EdFi_Ods_Year_2026"


def _copy(end_sessions: bool = False) -> InstanceRequested:
    return _command(template=SOURCE_DB).model_copy(
        update={"source_instance_id": SOURCE_ID, "end_source_sessions": end_sessions}
    )


async def test_a_copy_holds_the_sources_lock_and_ends_its_sessions_when_allowed(
    emit: Recorder,
) -> None:
    server = FakeOdsServer({SOURCE_DB: Marker(SOURCE_ID, uuid.uuid4(), TENANT), "postgres": None})
    server.connect(SOURCE_DB, "ods-api")
    cmd = _copy(end_sessions=True)
    held_during_clone: list[bool] = []
    server.during_clone = lambda: held_during_clone.append(server.lock_held(SOURCE_ID))

    await _provisioner(server, emit).handle(cmd, attempt=1)

    _only_outcome(emit, cmd, InstanceCreated)
    assert held_during_clone == [True]
    assert not server.lock_held(SOURCE_ID)
    assert ("end_sessions", SOURCE_DB) in server.calls
    assert server.marker(TARGET) == Marker(INSTANCE_ID, cmd.job_id, TENANT)
    source_marker = server.marker(SOURCE_DB)
    assert source_marker is not None and source_marker.instance_id == SOURCE_ID
    assert server.databases[SOURCE_DB].allow_connections


async def test_a_copy_waits_for_the_sources_operation_to_end(emit: Recorder) -> None:
    server = FakeOdsServer({SOURCE_DB: Marker(SOURCE_ID, uuid.uuid4(), TENANT), "postgres": None})
    cmd = _copy()
    async with server.session(SOURCE_ID):  # a rename of the source is running
        task = asyncio.create_task(_provisioner(server, emit).handle(cmd, attempt=1))
        await asyncio.sleep(0.05)
        assert not server.clone_calls
        waiting = [
            e
            for e in emit.of(InstanceOperationProgress)
            if isinstance(e, InstanceOperationProgress) and "Waiting for instance 7" in e.message
        ]
        assert waiting
    await task
    _only_outcome(emit, cmd, InstanceCreated)


async def test_a_copy_never_ends_the_sessions_of_a_database_not_marked_as_the_sources(
    emit: Recorder,
) -> None:
    server = FakeOdsServer({SOURCE_DB: None, "postgres": None})  # imported, never adopted
    server.connect(SOURCE_DB, "ods-api")
    cmd = _copy(end_sessions=True)

    await _provisioner(server, emit).handle(cmd, attempt=1)

    failed = _assert_single_failure(emit, cmd)
    assert "carries no mark of instance 7" in failed.reason
    assert server.databases[SOURCE_DB].connections == {"ods-api"}
    assert not server.clone_calls and TARGET not in server.databases


async def test_a_copy_of_a_missing_source_names_the_source(emit: Recorder) -> None:
    server = FakeOdsServer({"postgres": None})
    cmd = _copy()

    await _provisioner(server, emit).handle(cmd, attempt=1)

    assert "the database of instance 7" in _assert_single_failure(emit, cmd).reason


# --- deployments sharing a server ---------------------------------------------------------------

HERE, ELSEWHERE = "deployment-here", "deployment-elsewhere"


async def _here() -> str:
    return HERE


async def test_marks_name_this_deployment(server: FakeOdsServer, emit: Recorder) -> None:
    cmd = _command()
    await _provisioner(server, emit, deployment=_here).handle(cmd, attempt=1)
    _only_outcome(emit, cmd, InstanceCreated)
    assert server.marker(TARGET) == Marker(INSTANCE_ID, cmd.job_id, TENANT, HERE)


async def test_another_deployments_database_of_the_same_instance_id_is_never_taken_for_ours(
    emit: Recorder,
) -> None:
    """Another deployment (a test stack, another admin database) on the same server made
    TARGET for its own instance 7 of the same tenant: a create here fails and leaves it; a
    delete here refuses to drop it."""
    theirs = Marker(INSTANCE_ID, uuid.uuid4(), TENANT, ELSEWHERE)
    server = FakeOdsServer({TEMPLATE: None, TARGET: theirs, "postgres": None})
    cmd = _command()
    await _provisioner(server, emit, deployment=_here).handle(cmd, attempt=1)
    assert (
        "not created by this system for this instance" in _assert_single_failure(emit, cmd).reason
    )
    delete, deleting = _delete_command(), Recorder()
    await _provisioner(server, deleting, deployment=_here).handle(delete, attempt=1)
    failed = _only_outcome(deleting, delete, InstanceDeleteFailed)
    assert "left untouched" in failed.reason
    assert server.marker(TARGET) == theirs


async def test_a_mark_made_before_deployments_were_named_is_still_ours(
    emit: Recorder,
) -> None:
    server = FakeOdsServer({TEMPLATE: None, TARGET: _ours(), "postgres": None})
    delete = _delete_command()
    await _provisioner(server, emit, deployment=_here).handle(delete, attempt=1)
    assert _only_outcome(emit, delete, InstanceDeleted).dropped
    assert TARGET not in server.databases


class SlowConfirms(Recorder):
    """A broker whose confirm of each Started takes `delay` seconds; the log says when each
    event was handed over and when it was confirmed, beside the server's calls."""

    def __init__(self, server: FakeOdsServer, delay: float) -> None:
        super().__init__()
        self.server = server
        self.delay = delay
        self.log: list[str] = []

    async def __call__(self, message: Message) -> None:
        name = type(message).__name__
        self.log.append(f"send {name} (server calls so far: {len(self.server.calls)})")
        if isinstance(message, InstanceOperationStarted):
            await asyncio.sleep(self.delay)
        self.events.append(message)
        self.log.append(f"confirmed {name} (server calls so far: {len(self.server.calls)})")


async def test_the_work_begins_while_started_is_confirmed_and_nothing_overtakes_it(
    server: FakeOdsServer,
) -> None:
    # Started goes out once the progress delay has passed, during the clone (a create this
    # fast would send none), and its confirm takes longer than the rest of the work.
    emit = SlowConfirms(server, delay=0.4)
    server.clone_delay = 0.3
    cmd = _command()

    await _provisioner(server, emit, progress_delay=0.05).handle(cmd, attempt=1)

    # The server was at work (the clone, the mark, the rename) between Started's send and its
    # confirm ...
    def calls_at(prefix: str) -> tuple[int, int]:
        k = next(i for i, line in enumerate(emit.log) if line.startswith(prefix))
        return k, int(emit.log[k].rsplit(" ", 1)[1].rstrip(")"))

    assert emit.log[0].startswith("send InstanceOperationStarted")
    _, at_send = calls_at("send InstanceOperationStarted")
    confirmed, at_confirm = calls_at("confirmed InstanceOperationStarted")
    assert at_confirm > at_send, emit.log
    assert "clone" in [c[0] for c in server.calls[:at_confirm]], emit.log
    # ... and every other event went out only after it: in the order they happened.
    sends = [line for line in emit.log if line.startswith("send ")]
    assert all(emit.log.index(line) > confirmed for line in sends[1:])
    assert isinstance(emit.events[0], InstanceOperationStarted)
    assert [type(e) for e in emit.events][-1] is InstanceCreated
    assert len(emit.of(InstanceOperationStarted)) == 1


async def test_a_started_that_is_never_confirmed_fails_the_events_after_it(
    server: FakeOdsServer,
) -> None:
    class Refusing(Recorder):
        async def __call__(self, message: Message) -> None:
            if isinstance(message, InstanceOperationStarted):
                raise ConnectionError("broker gone")
            await super().__call__(message)

    emit = Refusing()
    cmd = _command()

    with pytest.raises(ConnectionError):
        await _provisioner(server, emit).handle(cmd, attempt=1)
    # No outcome overtook the Started that never went out: the command goes back to the broker.
    assert not emit.outcomes


async def test_a_creates_first_read_of_the_server_goes_beside_its_claim(
    server: FakeOdsServer, emit: Recorder
) -> None:
    """Issue 18: a create reads the target, the template and its staging clone while its claim
    is on its way to the admin database (one round trip fewer before the clone), and uses
    that read once the claim lets it run: the server is not read twice for it."""
    cmd = _command()
    staging = staging_name(cmd.job_id)
    seen_while_claiming: list[tuple[object, ...]] = []

    async def claim(job_id: uuid.UUID) -> Claimed:
        await asyncio.sleep(0.01)  # the claim's round trip
        seen_while_claiming.extend(server.of("database"))
        return Claimed.CLAIMED

    await _provisioner(server, emit, claim=claim).handle(cmd, attempt=1)

    _only_outcome(emit, cmd, InstanceCreated)
    assert seen_while_claiming == [(TARGET,), (TEMPLATE,), (staging,)]
    # Then only the target's check before the rename (a database that appeared meanwhile).
    assert server.of("database") == [(TARGET,), (TEMPLATE,), (staging,), (TARGET,)]


async def test_a_create_whose_first_read_failed_beside_its_claim_reads_again_and_goes_on(
    server: FakeOdsServer, emit: Recorder
) -> None:
    """The read beside the claim failed (a dropped connection): the create reads again itself,
    under the same claim (the job is claimed once), and is done."""
    cmd = _command()
    server.fail("database", TransientError("the connection to the server was lost"))
    claims: list[uuid.UUID] = []

    async def claim(job_id: uuid.UUID) -> Claimed:
        claims.append(job_id)
        return Claimed.CLAIMED

    await _provisioner(server, emit, claim=claim).handle(cmd, attempt=1)

    _only_outcome(emit, cmd, InstanceCreated)
    assert claims == [cmd.job_id]
    assert server.of("database")[-2:] == [(staging_name(cmd.job_id),), (TARGET,)]
    assert TARGET in server.databases


async def test_a_create_whose_claim_says_no_uses_nothing_it_read_beside_it(
    server: FakeOdsServer, emit: Recorder
) -> None:
    """A cancelled job's create read the server beside its claim, and does nothing else."""
    cmd = _command()

    async def cancelled(job_id: uuid.UUID) -> Claimed:
        return Claimed.CANCELLED

    await _provisioner(server, emit, claim=cancelled).handle(cmd, attempt=1)

    assert emit.events == []
    assert server.clone_calls == [] and server.of("mark") == []
    assert set(server.databases) == {TEMPLATE, "postgres"}


class SlowFence(Fence):
    """A fence whose entry takes a round trip, saying what the server saw meanwhile."""

    def __init__(self, server: FakeOdsServer) -> None:
        super().__init__(live=True)
        self.server = server
        self.entered = 0
        self.seen_while_entering: list[list[tuple[object, ...]]] = []

    @asynccontextmanager
    async def __call__(self, job_id: uuid.UUID) -> AsyncIterator[bool]:
        self.entered += 1
        before = len(self.server.calls)
        await asyncio.sleep(0.01)  # the fence's statement on its way to the admin database
        self.seen_while_entering.append([c for c in self.server.calls[before:]])
        yield True
        self.done.append(job_id)


async def test_a_creates_check_for_a_target_that_appeared_goes_beside_its_fence(
    server: FakeOdsServer, emit: Recorder
) -> None:
    """Issue 18: whether the target appeared during the clone is read while the fence is
    entered (one round trip fewer between the clone and the rename), and answered before
    anything is done in the fence."""
    cmd = _command()
    fence = SlowFence(server)

    await _provisioner(server, emit, fence=fence).handle(cmd, attempt=1)

    _only_outcome(emit, cmd, InstanceCreated)
    staging = staging_name(cmd.job_id)
    marker = Marker(INSTANCE_ID, cmd.job_id, TENANT)
    assert fence.seen_while_entering == [[("mark", staging, marker), ("database", TARGET)]]
    assert fence.done == [cmd.job_id]


async def test_a_creates_mark_goes_beside_its_fence_and_before_its_rename(
    server: FakeOdsServer, emit: Recorder
) -> None:
    """Issue 18: the clone is marked as this instance's while the fence is entered (one round
    trip fewer between the clone and the rename); the rename still comes after the mark, and
    only inside the fence."""
    cmd = _command()
    fence = SlowFence(server)

    await _provisioner(server, emit, fence=fence).handle(cmd, attempt=1)

    _only_outcome(emit, cmd, InstanceCreated)
    staging = staging_name(cmd.job_id)
    steps = [c[0] for c in server.calls if c[0] in ("mark", "rename")]
    assert steps == ["mark", "rename"]
    assert fence.seen_while_entering[0][0] == (
        "mark",
        staging,
        Marker(INSTANCE_ID, cmd.job_id, TENANT),
    )
    assert server.marker(TARGET) == Marker(INSTANCE_ID, cmd.job_id, TENANT)


async def test_a_mark_that_failed_beside_the_fence_leaves_it_recording_nothing_and_renames_nothing(
    server: FakeOdsServer, emit: Recorder
) -> None:
    """The mark met a refusal that no retry cures: nothing is done in the fence (no server step
    recorded, no rename), the create fails saying why, and the unmarked clone is not renamed."""
    cmd = _command()
    fence = SlowFence(server)
    server.fail("mark", PermanentError("must be owner of database"))

    await _provisioner(server, emit, fence=fence).handle(cmd, attempt=1)

    failed = _assert_single_failure(emit, cmd)
    assert "must be owner" in failed.reason
    assert fence.entered == 1 and fence.done == []
    assert server.rename_calls == []
    assert TARGET not in server.databases


async def test_a_mark_that_failed_for_a_while_beside_the_fence_is_tried_again_and_goes_on(
    server: FakeOdsServer, emit: Recorder
) -> None:
    """The mark met a dropped connection: the fence is left (nothing recorded), the create is
    tried again from its staging clone (not cloned twice), marked, renamed and done."""
    cmd = _command()
    fence = SlowFence(server)
    server.fail("mark", TransientError("the connection to the server was lost"))

    await _provisioner(server, emit, fence=fence).handle(cmd, attempt=1)

    _only_outcome(emit, cmd, InstanceCreated)
    assert fence.entered == 2 and fence.done == [cmd.job_id]
    assert len(server.clone_calls) == 1
    assert server.marker(TARGET) == Marker(INSTANCE_ID, cmd.job_id, TENANT)


async def test_a_target_appearing_during_the_clone_is_refused_inside_the_fence_recording_nothing(
    server: FakeOdsServer, emit: Recorder
) -> None:
    """The target appeared: the clone is dropped and the create fails, and the fence records no
    server step done (the job's last step was not taken)."""
    cmd = _command()
    fence = SlowFence(server)
    server.during_clone = lambda: server.databases.update({TARGET: FakeDatabase()})

    await _provisioner(server, emit, fence=fence).handle(cmd, attempt=1)

    failed = _assert_single_failure(emit, cmd)
    assert "appeared" in failed.reason
    assert fence.done == []
    assert server.rename_calls == []
    assert staging_name(cmd.job_id) not in server.databases


async def test_a_check_beside_the_fence_that_failed_is_tried_again_and_the_create_goes_on(
    server: FakeOdsServer, emit: Recorder
) -> None:
    """The read beside the fence met a dropped connection: the fence is left (nothing recorded),
    the create is tried again from its staging clone (not cloned twice), and is done."""
    cmd = _command()
    fence = SlowFence(server)
    server.during_clone = lambda: server.fail(
        "database", TransientError("the connection to the server was lost")
    )

    await _provisioner(server, emit, fence=fence).handle(cmd, attempt=1)

    _only_outcome(emit, cmd, InstanceCreated)
    assert fence.entered == 2 and fence.done == [cmd.job_id]
    assert len(server.clone_calls) == 1
    assert TARGET in server.databases and staging_name(cmd.job_id) not in server.databases
