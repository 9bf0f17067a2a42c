"""Start-up rules a deployer relies on."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.stack import ROOT

pytestmark = pytest.mark.e2e


def test_status_refuses_to_start_in_production_without_the_encryption_key(
    settings_env: dict[str, str],
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ODS_CONNECTION_STRING_ENCRYPTION_KEY"}
    env.update(settings_env)
    env.pop("ODS_CONNECTION_STRING_ENCRYPTION_KEY")
    env["EDFI_IM_ENVIRONMENT"] = "production"
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli", "run", "status"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert b"ODS_CONNECTION_STRING_ENCRYPTION_KEY is not set" in proc.stderr
