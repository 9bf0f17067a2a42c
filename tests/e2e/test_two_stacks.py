"""Two stacks side by side on one PostgreSQL and one RabbitMQ, as the README's recipe sets them
up: each started by `infra/Procfile` (as `just up` does) with its own admin database, vhost,
database-name pattern, gateway port and health ports. Both run at once, each creates an instance
and sees only its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import service_env, unique_name
from tests.support import pg, rabbit
from tests.support.flows import create_completed
from tests.support.stack import ROOT, Stack, free_port

pytestmark = pytest.mark.e2e

CONSUMERS = ("provisioner", "status", "scheduler")


class ProcfileStack:
    """One stack run by honcho from infra/Procfile, with ports and places of its own."""

    def __init__(self, label: str, log_dir: Path) -> None:
        run = uuid.uuid4().hex[:8]
        self.admin = f"edfi_admin_{label}_{run}"
        self.vhost = f"edfi_im_{label}_{run}"
        self.prefix = f"EdFi_Ods_{label}{run}_"
        self.health = {name: free_port() for name in CONSUMERS}
        pg.edfi_admin(self.admin)
        rabbit.create_vhost(self.vhost)
        env = service_env(
            admin_database_url=pg.database_url(self.admin),
            ods_server_url=pg.SERVER,
            rabbitmq_url=rabbit.amqp_url(self.vhost),
            db_prefix=self.prefix,
        )
        self.stack = Stack(env=env, log_dir=log_dir, vhost=self.vhost, shard_count=4)
        env |= {
            "EDFI_IM_GATEWAY_PORT": str(self.stack.port),
            **{f"EDFI_IM_{n.upper()}_HEALTH_PORT": str(p) for n, p in self.health.items()},
        }
        clean = {k: v for k, v in os.environ.items() if not k.startswith("EDFI_IM_")}
        self.log = (log_dir / "honcho.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "honcho", "-f", "infra/Procfile", "-d", str(ROOT), "start"],
            cwd=ROOT,
            env={**clean, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, Path(self.log.name).read_text()[-3000:]
            if self.stack._ready() and all(self.healthy(n) for n in CONSUMERS):
                return
            time.sleep(0.5)
        raise TimeoutError(Path(self.log.name).read_text()[-3000:])

    def healthy(self, name: str) -> bool:
        try:
            url = f"http://127.0.0.1:{self.health[name]}/health"
            return httpx.get(url, timeout=2).status_code in (200, 204)
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        for name in pg.databases_like(self.prefix.replace("_", r"\_") + "%"):
            pg.drop(name)
        pg.drop(self.admin)
        rabbit.delete_vhost(self.vhost)


@pytest.fixture
def two_stacks(tmp_path: Path) -> Iterator[tuple[ProcfileStack, ProcfileStack]]:
    started: list[ProcfileStack] = []
    try:
        for label in ("a", "b"):
            (tmp_path / label).mkdir()
            started.append(ProcfileStack(label, tmp_path / label))
        for s in started:
            s.wait_ready()
        yield started[0], started[1]
    finally:
        for s in started:
            s.stop()


def test_two_stacks_run_side_by_side_each_seeing_only_its_own(
    two_stacks: tuple[ProcfileStack, ProcfileStack],
) -> None:
    a, b = two_stacks
    assert a.stack.port != b.stack.port
    assert set(a.health.values()).isdisjoint(b.health.values())
    with a.stack.client() as api_a, b.stack.client() as api_b:
        made_a = create_completed(api_a, unique_name("Side A"))
        made_b = create_completed(api_b, unique_name("Side B"))
        assert made_a["databaseName"].startswith(a.prefix)
        assert made_b["databaseName"].startswith(b.prefix)
        names_a = {i["name"] for i in api_a.get("/v2/dbInstances").json()}
        names_b = {i["name"] for i in api_b.get("/v2/dbInstances").json()}
    assert names_a == {made_a["name"]}
    assert names_b == {made_b["name"]}
    assert pg.exists(made_a["databaseName"]) and pg.exists(made_b["databaseName"])
    # Each consumer answers on the health port its stack gave it, with its own metrics.
    for s in (a, b):
        for name in CONSUMERS:
            assert s.healthy(name), (name, s.health[name])
