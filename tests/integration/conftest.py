"""Integration tests share no mutable state with other suites, nor with each other's modules: each
module gets an admin database cloned from the run's migrated template, a RabbitMQ vhost of its
own, and the integration tests an ODS database-name prefix of their own (the end-to-end stack
keeps the run's session ones, tests/conftest.py). A module that wipes every schedule wipes only
its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.admin_db.engine import create_admin_engine
from services.runtime.settings import Settings
from services.runtime.topology import declare_topology
from tests.conftest import RUN_ID, service_env
from tests.support import pg, rabbit
from tests.support.inprocess import AdminTemplate


@pytest.fixture(scope="module")
def vhost() -> Iterator[str]:
    name = f"edfi_im_integration_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    rabbit.create_vhost(name)
    yield name
    rabbit.delete_vhost(name)


@pytest.fixture(scope="module")
def admin_database(admin_template: AdminTemplate) -> Iterator[str]:
    name = admin_template.clone("i")
    yield name
    admin_template.drop_later(name)


@pytest.fixture(scope="session")
def db_prefix() -> Iterator[str]:
    prefix = f"EdFi_Ods_i{RUN_ID}_"
    yield prefix
    for name in pg.databases_like(prefix.replace("_", r"\_") + "%"):
        pg.drop_later(name)


@pytest.fixture(scope="module")
def settings_env(vhost: str, admin_database: str, db_prefix: str) -> dict[str, str]:
    return service_env(
        admin_database_url=pg.database_url(admin_database),
        ods_server_url=pg.SERVER,
        rabbitmq_url=rabbit.amqp_url(vhost),
        db_prefix=db_prefix,
    )


@pytest.fixture(scope="module")
def settings(settings_env: dict[str, str]) -> Iterator[Settings]:
    """The module's settings, also in the environment while its tests run (as a service's)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in settings_env.items():
            mp.setenv(key, value)
        yield Settings()


@pytest.fixture(scope="module")
async def topology(settings: Settings) -> Settings:
    await declare_topology(settings.rabbitmq_url, settings.shard_count, settings.delivery_limit)
    return settings


@pytest.fixture(scope="module")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = create_admin_engine(settings.admin_database_url)
    yield eng
    await eng.dispose()
