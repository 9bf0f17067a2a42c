"""`just services` (infra/scripts/services.sh) as a user who is not root: it checks PostgreSQL and
RabbitMQ from outside and says plainly what needs root; EDFI_IM_SKIP_SERVICES=1 skips it. And
what `just --list` and infra/Procfile say about the four services and their ports."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.support.stack import ROOT, free_port

pytestmark = pytest.mark.integration

SCRIPT = str(ROOT / "infra" / "scripts" / "services.sh")


def _as_another_user(**env: str) -> subprocess.CompletedProcess[str]:
    """The script as `nobody` (dropped from root with setpriv), or as the user running this."""
    command = ["bash", SCRIPT]
    if os.geteuid() == 0:
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
    return subprocess.run(
        command,
        env={"PATH": os.environ["PATH"], "HOME": "/tmp", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_as_another_user_with_the_services_up_it_checks_and_passes() -> None:
    done = _as_another_user()
    assert done.returncode == 0, done.stderr
    assert "RabbitMQ answers with the plugins this project needs" in done.stdout
    assert "consumer_timeout is left as it is (raising it needs root" in done.stdout


def test_as_another_user_a_broker_that_is_down_is_explained_and_exit_1() -> None:
    done = _as_another_user(RABBITMQ_NODE_PORT=str(free_port()))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("services: RabbitMQ is not answering on 127.0.0.1:")
    assert lines[0].endswith("and starting it needs root")
    assert "EDFI_IM_SKIP_SERVICES=1 just up" in lines[1]
    assert "Traceback" not in done.stderr and "cookie" not in done.stderr.lower()


def test_as_another_user_a_missing_management_api_is_explained_and_exit_1() -> None:
    done = _as_another_user(EDFI_IM_RABBITMQ_MANAGEMENT_URL=f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 1
    assert "enable the rabbitmq_management plugin" in done.stderr


def test_skip_services_leaves_them_alone() -> None:
    done = _as_another_user(EDFI_IM_SKIP_SERVICES="1", RABBITMQ_NODE_PORT=str(free_port()))
    assert done.returncode == 0
    assert done.stdout.startswith("EDFI_IM_SKIP_SERVICES=1: not checking PostgreSQL and RabbitMQ")


def test_just_list_names_the_four_services_for_up_and_run() -> None:
    just = shutil.which("just")
    if just is None:
        pytest.fail("just is missing: `pip install rust-just` (README, Run it)")
    listing = subprocess.run(
        [just, "--list"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    recipes = {line.split()[0]: line for line in listing.splitlines()[1:] if line.strip()}
    for recipe in ("up", "run"):
        for service in ("gateway", "provisioner", "status", "scheduler"):
            assert service in recipes[recipe], recipes[recipe]
    assert "EDFI_IM_SKIP_SERVICES" in recipes["services"]


def test_the_procfile_runs_the_four_services_on_ports_from_settings() -> None:
    lines = dict(
        line.split(": ", 1) for line in (ROOT / "infra" / "Procfile").read_text().splitlines()
    )
    assert set(lines) == {"gateway", "provisioner", "status", "scheduler"}
    for service, default in (("provisioner", 8081), ("status", 8082), ("scheduler", 8083)):
        setting = f"EDFI_IM_{service.upper()}_HEALTH_PORT"
        assert f'EDFI_IM_HEALTH_PORT="${{{setting}:-{default}}}"' in lines[service]
