"""The fault suite is hermetic: it runs against a PostgreSQL cluster and a three-node RabbitMQ
cluster of its own (tests/support/own.py), started once for the run and removed at its end.
These fixtures replace the session's vhost, admin database, database prefix and settings with
ones on those servers, so no fault test uses (or stops, restarts, reconfigures, or ends
connections on) the machine's own PostgreSQL or RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import RUN_ID, service_env
from tests.faults.chaos import SUMMARY_LINES
from tests.support.own import Own, own_servers


@pytest.fixture(scope="session")
def own() -> Iterator[Own]:
    with own_servers(RUN_ID) as servers:
        yield servers


@pytest.fixture(scope="session")
def vhost(own: Own) -> Iterator[str]:
    name = f"edfi_im_test_{RUN_ID}"
    own.broker.create_vhost(name)
    yield name
    own.broker.delete_vhost(name)


@pytest.fixture(scope="session")
def admin_database(own: Own) -> str:
    name = f"edfi_admin_test_{RUN_ID}"
    own.server.edfi_admin(name)
    return name  # goes with the cluster


@pytest.fixture(scope="session")
def db_prefix() -> str:
    return f"EdFi_Ods_t{RUN_ID}_"  # the databases go with the cluster


@pytest.fixture(scope="session")
def settings_env(own: Own, vhost: str, admin_database: str, db_prefix: str) -> dict[str, str]:
    return service_env(
        admin_database_url=own.server.database_url(admin_database),
        ods_server_url=own.server.url,
        rabbitmq_url=own.broker.amqp_url(vhost),
        db_prefix=db_prefix,
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The chaos summary line (`just faults`, `just chaos`), whatever the output capture."""
    for line in SUMMARY_LINES:
        terminalreporter.write_line(line)
