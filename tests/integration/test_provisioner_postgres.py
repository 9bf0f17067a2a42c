"""The provisioner against the real PostgreSQL server: invariants 3 (idempotent on redelivery)
and 6 (never overwrite or drop a database it did not create for that instance)."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from contracts.messages import (
    InstanceCreated,
    InstanceCreateFailed,
    InstanceOperationStarted,
    InstanceRequested,
    Message,
    Operation,
)
from services.provisioner.handler import Provisioner
from services.rules.marker import Marker, staging_name
from services.runtime.ods_server import PostgresOdsServer
from services.runtime.settings import Settings
from tests.conftest import RUN_ID
from tests.support import pg

pytestmark = pytest.mark.integration

MINIMAL = "EdFi_Ods_Minimal_Template"


def _command(db_prefix: str, template: str = MINIMAL, instance_id: int = 7) -> InstanceRequested:
    return InstanceRequested(
        job_id=uuid.uuid4(),
        instance_id=instance_id,
        operation=Operation.CREATE,
        database_name=f"{db_prefix}{uuid.uuid4().hex[:8]}",
        database_template=template,
    )


def _provisioner(settings: Settings) -> tuple[Provisioner, list[Message]]:
    events: list[Message] = []

    async def emit(event: Message) -> None:
        events.append(event)

    server = PostgresOdsServer(settings.ods_server_url, clone_slots=2)
    return (
        # Locks scoped to this run: another run on the same server has its own instance 7.
        Provisioner(
            server,
            emit,
            worker="test",
            retry_attempts=2,
            retry_max_wait=0.05,
            scope=f"tests-{RUN_ID}",
        ),
        events,
    )


async def test_create_clones_the_template_and_marks_the_database(
    settings: Settings, db_prefix: str
) -> None:
    provisioner, events = _provisioner(settings)
    cmd = _command(db_prefix)
    await provisioner.handle(cmd, attempt=1)
    assert isinstance(events[0], InstanceOperationStarted)
    assert isinstance(events[-1], InstanceCreated)
    assert sum(isinstance(e, (InstanceCreated, InstanceCreateFailed)) for e in events) == 1
    assert pg.exists(cmd.database_name)
    assert Marker.parse(pg.comment(cmd.database_name)) == Marker(cmd.instance_id, cmd.job_id)
    assert not pg.exists(staging_name(cmd.job_id))
    rows = pg.query(cmd.database_name, "SELECT nameofinstitution FROM edfi.educationorganization")
    assert rows == [("Grand Bend ISD",)]


async def test_redelivered_create_reports_success_without_cloning_again(
    settings: Settings, db_prefix: str
) -> None:
    provisioner, events = _provisioner(settings)
    cmd = _command(db_prefix)
    await provisioner.handle(cmd, attempt=1)
    pg.execute(cmd.database_name, "CREATE TABLE written_after_create (x int)")
    events.clear()
    await provisioner.handle(cmd, attempt=2)
    assert isinstance(events[-1], InstanceCreated)
    # The same database, not a fresh clone: what was written after the first create is there.
    assert pg.query(cmd.database_name, "SELECT count(*) FROM written_after_create") == [(0,)]


async def test_a_foreign_database_with_the_target_name_is_left_untouched(
    settings: Settings, db_prefix: str
) -> None:
    provisioner, events = _provisioner(settings)
    cmd = _command(db_prefix)
    pg.create(cmd.database_name, comment_text="owned by someone else")
    pg.execute(cmd.database_name, "CREATE TABLE precious (x int)")
    await provisioner.handle(cmd, attempt=1)
    outcome = events[-1]
    assert isinstance(outcome, InstanceCreateFailed)
    assert cmd.database_name in outcome.reason
    assert "already exists" in outcome.reason
    assert pg.comment(cmd.database_name) == "owned by someone else"
    assert pg.query(cmd.database_name, "SELECT count(*) FROM precious") == [(0,)]


async def test_another_instances_database_is_not_taken_over(
    settings: Settings, db_prefix: str
) -> None:
    provisioner, events = _provisioner(settings)
    first = _command(db_prefix, instance_id=100)
    await provisioner.handle(first, attempt=1)
    second = InstanceRequested(
        job_id=uuid.uuid4(),
        instance_id=101,
        operation=Operation.CREATE,
        database_name=first.database_name,
        database_template=MINIMAL,
    )
    events.clear()
    await provisioner.handle(second, attempt=1)
    assert isinstance(events[-1], InstanceCreateFailed)
    assert Marker.parse(pg.comment(first.database_name)) == Marker(100, first.job_id)


async def test_a_missing_template_fails_with_its_name(settings: Settings, db_prefix: str) -> None:
    provisioner, events = _provisioner(settings)
    cmd = _command(db_prefix, template=f"no_such_template_{uuid.uuid4().hex[:6]}")
    await provisioner.handle(cmd, attempt=1)
    outcome = events[-1]
    assert isinstance(outcome, InstanceCreateFailed)
    assert cmd.database_template and cmd.database_template in outcome.reason
    assert not pg.exists(cmd.database_name)


async def test_a_clone_left_by_a_crashed_attempt_is_finished(
    settings: Settings, db_prefix: str
) -> None:
    provisioner, events = _provisioner(settings)
    cmd = _command(db_prefix)
    staging = staging_name(cmd.job_id)
    pg.create(staging)  # as if the worker died right after CREATE DATABASE
    pg.execute(staging, "CREATE TABLE from_first_attempt (x int)")
    await provisioner.handle(cmd, attempt=2)
    assert isinstance(events[-1], InstanceCreated)
    assert not pg.exists(staging)
    assert pg.query(cmd.database_name, "SELECT count(*) FROM from_first_attempt") == [(0,)]


async def test_names_that_need_quoting_reach_sql_quoted(settings: Settings, db_prefix: str) -> None:
    provisioner, events = _provisioner(settings)
    cmd = InstanceRequested(
        job_id=uuid.uuid4(),
        instance_id=9,
        operation=Operation.CREATE,
        database_name=f'{db_prefix}Quote"; DROP DATABASE postgres; --',
        database_template=MINIMAL,
    )
    await provisioner.handle(cmd, attempt=1)
    assert isinstance(events[-1], InstanceCreated)
    assert pg.exists(cmd.database_name)
    assert pg.exists("postgres")


async def test_a_template_with_a_session_on_it_says_whose_session_it_is(
    settings: Settings, db_prefix: str
) -> None:
    """Cloning needs nobody connected to the template: the failure names who is (issue 14: it
    gave only PostgreSQL's message, after ~28 s of retries)."""
    template = f"{db_prefix}busy_template_{uuid.uuid4().hex[:6]}"
    pg.create(template)
    try:
        with psycopg.connect(pg.database_url(template), application_name="reporting-job"):
            provisioner, events = _provisioner(settings)
            cmd = _command(db_prefix, template=template)
            await provisioner.handle(cmd, attempt=1)
        outcome = events[-1]
        assert isinstance(outcome, InstanceCreateFailed)
        assert "is being accessed by other users" in outcome.reason
        assert "application 'reporting-job'" in outcome.reason and "pid " in outcome.reason
        assert not pg.exists(cmd.database_name)
    finally:
        pg.drop(template)


async def test_databases_reads_several_names_at_one_moment(
    settings: Settings, db_prefix: str
) -> None:
    """What a create reads before it clones (target, template, staging clone) in one
    statement: each name answered as `database` answers it, a missing one as None."""
    provisioner, _ = _provisioner(settings)
    cmd = _command(db_prefix)
    await provisioner.handle(cmd, attempt=1)
    missing = f"{db_prefix}missing"
    server = PostgresOdsServer(settings.ods_server_url, clone_slots=1)
    try:
        async with server.session(cmd.instance_id, scope=f"tests-{RUN_ID}-dbs") as s:
            known = await s.databases([cmd.database_name, MINIMAL, missing])
            one_by_one = [await s.database(n) for n in (cmd.database_name, MINIMAL, missing)]
    finally:
        await server.close()
    assert list(known) == [cmd.database_name, MINIMAL, missing]
    assert [known[cmd.database_name], known[MINIMAL], known[missing]] == one_by_one
    created = known[cmd.database_name]
    assert created is not None
    assert created.marker == Marker(cmd.instance_id, cmd.job_id)
    assert not created.is_template
    template = known[MINIMAL]
    assert template is not None
    assert template.is_template
    assert known[missing] is None
