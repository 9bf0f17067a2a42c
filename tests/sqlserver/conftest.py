"""Level 4 of SQL Server's verification: the contract suite against a real SQL Server, run only
when EDFI_IM_TEST_SQLSERVER_URL names one (`just test-sqlserver`), for example the
docker compose profile `sqlserver`:

    EDFI_IM_TEST_SQLSERVER_URL='mssql://sa:<password>@127.0.0.1:1433/master?TrustServerCertificate=yes'

Without it every test here is skipped, and says why: it never counts as passed. Everything it
creates is named edfi_im_t<run>_… and dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

URL_VARIABLE = "EDFI_IM_TEST_SQLSERVER_URL"
RUN = uuid.uuid4().hex[:8]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get(URL_VARIABLE):
        return
    skip = pytest.mark.skip(reason=f"no SQL Server: set {URL_VARIABLE} (just test-sqlserver)")
    for item in items:
        if "tests/sqlserver/" in str(item.path).replace("\\", "/"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def server_url() -> str:
    return os.environ[URL_VARIABLE]


@pytest.fixture(scope="session")
def prefix(server_url: str) -> Iterator[str]:
    """Names of this run's databases; all of them are dropped at the end."""
    from services.admin_db.migrate_mssql import _connect
    from services.rules import tsql

    name = f"edfi_im_t{RUN}_"
    yield name
    conn = _connect(server_url, database="master", autocommit=True)
    try:
        rows = conn.execute(*tsql.staging_databases(name)).fetchall()
        for database, _ in rows:
            conn.execute(*tsql.drop(str(database)))
    finally:
        conn.close()
