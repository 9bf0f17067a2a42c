"""The gateway's HTTP contract, in-process: each test module gets a gateway (its FastAPI app and
lifespan, tests/support/inprocess.py) on an admin database cloned for it from the run's
migrated template, on a RabbitMQ vhost and an ODS database-name prefix of the contract tests'
own. Nothing consumes the commands a gateway accepts here: tests that need a job carried out by
the provisioner are end-to-end tests (tests/e2e/)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from services.runtime.settings import Settings
from tests.conftest import RUN_ID, service_env
from tests.support import pg, rabbit
from tests.support.inprocess import AdminTemplate, InProcessGateway, gateway_on


@pytest.fixture(scope="session")
def contract_vhost() -> Iterator[str]:
    name = f"edfi_im_contract_{RUN_ID}"
    rabbit.create_vhost(name)
    yield name
    rabbit.delete_vhost(name)


@pytest.fixture(scope="session")
def db_prefix() -> Iterator[str]:
    """The contract tests' ODS database-name prefix (no database is made under it: nothing
    provisions here, and tests check that nothing was)."""
    prefix = f"EdFi_Ods_c{RUN_ID}_"
    yield prefix
    for name in pg.databases_like(prefix.replace("_", r"\_") + "%"):
        pg.drop_later(name)


@pytest.fixture(scope="session")
def contract_env(contract_vhost: str, db_prefix: str) -> dict[str, str]:
    """Every contract gateway's environment but its admin database (`gateway_on` adds it)."""
    return service_env(
        admin_database_url=pg.database_url("set_by_gateway_on"),
        ods_server_url=pg.SERVER,
        rabbitmq_url=rabbit.amqp_url(contract_vhost),
        db_prefix=db_prefix,
    )


@pytest.fixture(scope="module")
def gateway(
    admin_template: AdminTemplate, contract_env: dict[str, str]
) -> Iterator[InProcessGateway]:
    """The module's gateway, on an admin database of the module's own."""
    with gateway_on(admin_template, contract_env) as running:
        yield running


@pytest.fixture
def api(gateway: InProcessGateway) -> Iterator[httpx.Client]:
    with gateway.client() as client:
        yield client


@pytest.fixture(scope="module")
def admin_database(gateway: InProcessGateway) -> str:
    """The module's admin database (its gateway's)."""
    return gateway.admin_database


@pytest.fixture(scope="module")
def settings(gateway: InProcessGateway) -> Settings:
    return gateway.settings


@pytest.fixture(scope="module")
def settings_env(gateway: InProcessGateway) -> dict[str, str]:
    return gateway.env
