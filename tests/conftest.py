"""Session fixtures: each test run gets its own RabbitMQ vhost, its own admin database and its
own ODS database-name prefix, so runs never collide with each other or with `just up`. These are
the end-to-end tests' (tests/e2e/); the contract tests (tests/contract/) and the integration
tests (tests/integration/) override them with admin databases cloned from `admin_template`, a
vhost and a database-name prefix of their own, so no two suites share mutable state."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.admin_db.engine import create_admin_engine
from services.runtime.settings import Settings
from services.runtime.topology import declare_topology
from tests.support import pg, rabbit
from tests.support.inprocess import AdminTemplate
from tests.support.mssql_compile import MssqlCompileCheck

RUN_ID = uuid.uuid4().hex[:8]
TEST_KEY = base64.b64encode(os.urandom(32)).decode()
TEST_SIGNING_KEY = base64.b64encode(os.urandom(36)).decode()
# Where the tests' Ed-Fi Admin Console is served from, and the ODS/API it shows.
CONSOLE_ORIGIN = "https://console.example.org"
DISCOVERY_URL = "https://api.example.org/"


@pytest.fixture(scope="session", autouse=True)
def databases_dropped_together() -> Iterator[None]:
    """First set up, so last torn down: the databases the run leaves to drop (pg.drop_later)
    go together at its end."""
    yield
    pg.drop_the_rest()


@pytest.fixture(scope="session")
def run_id() -> str:
    return RUN_ID


@pytest.fixture(scope="session")
def encryption_key() -> bytes:
    return base64.b64decode(TEST_KEY)


@pytest.fixture(scope="session")
def vhost() -> Iterator[str]:
    name = f"edfi_im_test_{RUN_ID}"
    rabbit.create_vhost(name)
    yield name
    rabbit.delete_vhost(name)


@pytest.fixture(scope="session")
def admin_database() -> Iterator[str]:
    name = f"edfi_admin_test_{RUN_ID}"
    pg.edfi_admin(name)
    yield name
    pg.drop_later(name)


@pytest.fixture(scope="session")
def admin_template() -> Iterator[AdminTemplate]:
    """An EdFi_Admin database migrated once per run: the contract and integration tests clone
    an admin database of their own from it (`admin_template.clone()`, a tenth of a second)."""
    template = AdminTemplate(f"edfi_admin_tmpl_{RUN_ID}").create()
    yield template
    template.close()


@pytest.fixture(scope="session")
def db_prefix() -> Iterator[str]:
    prefix = f"EdFi_Ods_t{RUN_ID}_"
    yield prefix
    for name in pg.databases_like(prefix.replace("_", r"\_") + "%"):
        pg.drop_later(name)


@pytest.fixture(scope="session")
def settings_env(vhost: str, admin_database: str, db_prefix: str) -> dict[str, str]:
    """The environment every service of this run gets (the e2e tests pass it to subprocesses)."""
    return service_env(
        admin_database_url=pg.database_url(admin_database),
        ods_server_url=pg.SERVER,
        rabbitmq_url=rabbit.amqp_url(vhost),
        db_prefix=db_prefix,
    )


def service_env(
    *, admin_database_url: str, ods_server_url: str, rabbitmq_url: str, db_prefix: str
) -> dict[str, str]:
    """The services' settings for a run, given where their servers are."""
    return {
        "EDFI_IM_ENVIRONMENT": "production",
        "ODS_CONNECTION_STRING_ENCRYPTION_KEY": TEST_KEY,
        "EDFI_IM_ADMIN_DATABASE_URL": admin_database_url,
        "EDFI_IM_ODS_SERVER_URL": ods_server_url,
        "EDFI_IM_RABBITMQ_URL": rabbitmq_url,
        "EDFI_IM_DATABASE_NAME_PATTERN": db_prefix + "{name}",
        "EDFI_IM_SHARD_COUNT": "4",
        "EDFI_IM_OUTBOX_POLL_INTERVAL_SECONDS": "0.1",
        "EDFI_IM_HEARTBEAT_INTERVAL_SECONDS": "1",
        "EDFI_IM_STANDBY_DELAY_SECONDS": "1",
        "EDFI_IM_GRACEFUL_TIMEOUT_SECONDS": "20",
        "EDFI_IM_MISFIRE_THRESHOLD_SECONDS": "3",
        "EDFI_IM_JWT_SIGNING_KEY": TEST_SIGNING_KEY,
        "EDFI_IM_REGISTRATION_ENABLED": "true",
        "EDFI_IM_TOKEN_LIFETIME_SECONDS": "7200",
        # The tests try many wrong secrets from one address (fuzzing, auth tests): a higher
        # lockout threshold than production's 5 (tests/contract/test_auth.py checks the lockout).
        "EDFI_IM_TOKEN_MAX_FAILURES": "50",
        "EDFI_IM_SCHEDULER_POLL_INTERVAL_SECONDS": "0.5",
        "EDFI_IM_CORS_ORIGINS": CONSOLE_ORIGIN,
        "EDFI_IM_EDFI_API_DISCOVERY_URL": DISCOVERY_URL,
        "EDFI_IM_LOG_FORMAT": "json",
        "EDFI_IM_LOG_LEVEL": "DEBUG",
    }


@pytest.fixture(scope="session")
def settings(settings_env: dict[str, str], monkeypatch_session: pytest.MonkeyPatch) -> Settings:
    for key, value in settings_env.items():
        monkeypatch_session.setenv(key, value)
    return Settings()


@pytest.fixture(scope="session")
def monkeypatch_session() -> Iterator[pytest.MonkeyPatch]:
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="session")
async def topology(settings: Settings) -> Settings:
    await declare_topology(settings.rabbitmq_url, settings.shard_count, settings.delivery_limit)
    return settings


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = create_admin_engine(settings.admin_database_url)
    yield eng
    await eng.dispose()


def unique_name(prefix: str = "Inst") -> str:
    return f"{prefix} {uuid.uuid4().hex[:10]}"


# --- Under pytest-xdist (`just test`): the longest files first ---------------------------------

# Measured (`pytest --durations=0`, 2026-11-27): the files that take 15 s to 80 s, longest first.
# A worker takes a whole file at a time (--dist loadfile) in this order (--no-loadscope-reorder;
# xdist's own order, by number of tests, put the one-test fuzz last and left the other worker
# idle while it ran); the hundreds of short files come after, and fill the gaps at the end.
LONGEST_FIRST = (
    "tests/contract/test_fuzz.py",
    "tests/e2e/test_replicas.py",
    "tests/faults/test_smoke.py",
    "tests/e2e/test_schedules.py",
    "tests/e2e/test_tenants.py",
    "tests/e2e/test_dashboard.py",
    "tests/e2e/test_two_stacks.py",
    "tests/integration/test_clients_cli.py",
    "tests/integration/test_configuration_errors.py",
    "tests/e2e/test_events.py",
)
SUITES_FIRST = ("tests/e2e/", "tests/faults/", "tests/integration/", "tests/contract/")


def _rank(item: pytest.Item) -> tuple[int, int]:
    path = item.path.relative_to(item.config.rootpath).as_posix()
    if path in LONGEST_FIRST:
        return (0, LONGEST_FIRST.index(path))
    for i, suite in enumerate(SUITES_FIRST):
        if path.startswith(suite):
            return (1, i)
    return (2, 0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a pytest-xdist worker, the order the scheduler hands files out in (stable: a file's
    tests keep their order). One process keeps `testpaths`' order, fastest first."""
    if hasattr(config, "workerinput"):
        items.sort(key=_rank)


# --- SQL Server, level 2: every admin statement the services send also compiles for mssql ----

MSSQL_CHECK = MssqlCompileCheck()
MSSQL_CHECK.install()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    check = MSSQL_CHECK
    if not check.compiled and not check.failures:
        return
    terminalreporter.write_line(
        f"mssql dialect: {len(check.compiled)} distinct admin-database statements sent by the "
        f"services compile to T-SQL, {len(check.failures)} do not "
        f"({check.skipped} engine-specific executions left to the golden tests)"
    )
    for statement, why in check.failures.items():
        terminalreporter.write_line(f"  NOT FOR SQL SERVER ({why}): {statement[:300]}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Under pytest-xdist each worker hands what it saw to the controller, which reports and
    # fails the run (pytest_testnodedown below); without xdist this process does both.
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["mssql_compiled"] = dict(MSSQL_CHECK.compiled)
        workeroutput["mssql_failures"] = dict(MSSQL_CHECK.failures)
        workeroutput["mssql_skipped"] = MSSQL_CHECK.skipped
        return
    if MSSQL_CHECK.failures and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist: a worker's statements join the controller's check."""
    output = getattr(node, "workeroutput", {})
    MSSQL_CHECK.compiled.update(output.get("mssql_compiled", {}))
    MSSQL_CHECK.failures.update(output.get("mssql_failures", {}))
    MSSQL_CHECK.skipped += output.get("mssql_skipped", 0)
