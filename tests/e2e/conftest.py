from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.runtime.settings import Settings
from tests.support.stack import Stack, free_port


@pytest.fixture(scope="session")
def stack(
    settings_env: dict[str, str],
    settings: Settings,
    topology: Settings,
    vhost: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """The four services as subprocesses, started once per test process (each pytest-xdist
    worker). Session scope, not package scope: a worker runs e2e files between contract and
    integration files, and a package fixture is torn down and started again (about ten seconds)
    each time the worker comes back to tests/e2e/."""
    s = Stack(
        env=settings_env,
        log_dir=Path(tmp_path_factory.mktemp("logs")),
        vhost=vhost,
        shard_count=settings.shard_count,
    )
    # The consumers serve /health and /metrics on a port of their own, as in docker compose.
    for name in ("status", "provisioner", "scheduler"):
        s.start(name, EDFI_IM_HEALTH_PORT=str(free_port()))
    s.start("gateway")
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop_all()


@pytest.fixture
def api(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client() as client:
        yield client
