"""A configuration mistake ends a command with one readable line on stderr that names the setting
and its rule, and exit code 2: no traceback, whichever command or service is started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.support import pg

pytestmark = pytest.mark.integration

ADMIN = "postgresql://postgres@127.0.0.1:5432/EdFi_Admin_config_errors"


def _edfi_im(*args: str, env: dict[str, str], stdin: int | None = None) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDFI_IM_")}
    clean.pop("ODS_CONNECTION_STRING_ENCRYPTION_KEY", None)
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env={**clean, "EDFI_IM_ENVIRONMENT": "development", **env},
        stdin=subprocess.DEVNULL if stdin is None else stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        start_new_session=True,  # no controlling terminal: no prompt can be opened
    )
    return done.returncode, done.stderr


def _tenants(**tenants: dict[str, str]) -> str:
    return json.dumps(tenants)


MISTAKES = {
    "shared admin database": (
        {
            "EDFI_IM_TENANTS": _tenants(
                a={"admin_database_url": ADMIN}, b={"admin_database_url": ADMIN}
            )
        },
        ["EDFI_IM_TENANTS", "'a' and 'b' share an admin database"],
    ),
    "clashing name patterns": (
        {
            "EDFI_IM_TENANTS": _tenants(
                a={"admin_database_url": ADMIN + "_a", "database_name_pattern": "Ods_{name}"},
                b={"admin_database_url": ADMIN + "_b", "database_name_pattern": "ODS_{name}"},
            )
        },
        ["EDFI_IM_TENANTS", "would name their ODS databases alike", "database_name_pattern"],
    ),
    "tenants not JSON": (
        {"EDFI_IM_TENANTS": "{a: 1"},
        ["EDFI_IM_TENANTS is not valid JSON"],
    ),
    "tenant without a URL": (
        {"EDFI_IM_TENANTS": _tenants(a={"admin_database_url": "EdFi_Admin"})},
        ["EDFI_IM_TENANTS (tenant 'a', admin_database_url)", "PostgreSQL or SQL Server URL"],
    ),
    "token lifetime too short": (
        {"EDFI_IM_TOKEN_LIFETIME_SECONDS": "30"},
        ["EDFI_IM_TOKEN_LIFETIME_SECONDS", "greater than or equal to 60", "'30'"],
    ),
    "orphan threshold below the heartbeats": (
        {"EDFI_IM_ORPHAN_THRESHOLD_SECONDS": "20"},
        ["EDFI_IM_ORPHAN_THRESHOLD_SECONDS (20)", "3 x EDFI_IM_HEARTBEAT_INTERVAL_SECONDS (10)"],
    ),
    "port not a number": (
        {"EDFI_IM_GATEWAY_PORT": "eighty"},
        ["EDFI_IM_GATEWAY_PORT", "valid integer"],
    ),
    "name pattern without {name}": (
        {"EDFI_IM_DATABASE_NAME_PATTERN": "EdFi_Ods"},
        ["EDFI_IM_DATABASE_NAME_PATTERN", "must contain {name}"],
    ),
    "templates not JSON": (
        {"EDFI_IM_TEMPLATES": "Minimal"},
        ["EDFI_IM_TEMPLATES: must be JSON"],
    ),
    "encryption key not base64 (by its alias)": (
        {"EDFI_IM_ENCRYPTION_KEY": "not a key!"},
        ["ODS_CONNECTION_STRING_ENCRYPTION_KEY is not valid base64"],
    ),
    "broker URL of another scheme": (
        {"EDFI_IM_RABBITMQ_URL": "http://127.0.0.1:15672"},
        ["EDFI_IM_RABBITMQ_URL", "amqp://"],
    ),
}


def _one_readable_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("edfi-im: configuration error: ")
    return lines[0]


@pytest.mark.parametrize("mistake", list(MISTAKES))
@pytest.mark.parametrize("command", [("run", "gateway"), ("run", "provisioner"), ("migrate",)])
def test_a_configuration_mistake_is_one_line_naming_the_setting_and_exit_code_2(
    mistake: str, command: tuple[str, ...]
) -> None:
    env, expected = MISTAKES[mistake]
    rc, stderr = _edfi_im(*command, env=env)
    line = _one_readable_line(stderr)
    assert rc == 2, stderr
    for part in expected:
        assert part in line, (part, line)


def test_a_rule_checked_when_a_service_starts_is_one_line_too() -> None:
    """Production without a signing key: found by the gateway, not by the settings' parsing."""
    env = {"EDFI_IM_ENVIRONMENT": "production", "EDFI_IM_ADMIN_DATABASE_URL": pg.SERVER}
    rc, stderr = _edfi_im("run", "gateway", env=env)
    line = _one_readable_line(stderr)
    assert rc == 2
    assert "EDFI_IM_JWT_SIGNING_KEY is not set" in line


def test_clients_add_without_a_secret_or_a_terminal_says_what_to_set() -> None:
    rc, stderr = _edfi_im(
        "clients", "add", "nightly-scripts", env={"EDFI_IM_ADMIN_DATABASE_URL": ADMIN}
    )
    assert rc == 2
    assert "EOFError" not in stderr and "Traceback" not in stderr
    assert stderr.strip().splitlines() == [
        "clients add: no client secret: set EDFI_IM_CLIENT_SECRET (without a terminal there is "
        "no prompt to ask for it)"
    ]


@pytest.mark.parametrize("service", ["gateway", "status"])
def test_an_admin_database_that_does_not_exist_is_one_line_naming_its_setting(
    service: str,
) -> None:
    missing = f"EdFi_Admin_missing_{uuid.uuid4().hex[:8]}"
    url = f"postgresql://postgres@127.0.0.1:5432/{missing}"
    rc, stderr = _edfi_im("run", service, env={"EDFI_IM_ADMIN_DATABASE_URL": url})
    line = _one_readable_line(stderr)
    assert rc == 2
    assert line.endswith(
        f"EDFI_IM_ADMIN_DATABASE_URL: the admin database {missing!r} does not exist; create "
        "and migrate it with `edfi-im migrate` (`just setup`)"
    )
    tenants = _tenants(a={"admin_database_url": url})
    rc, stderr = _edfi_im(
        "run",
        service,
        env={"EDFI_IM_ADMIN_DATABASE_URL": pg.SERVER, "EDFI_IM_TENANTS": tenants},
    )
    assert rc == 2
    assert "EDFI_IM_TENANTS (tenant 'a', admin_database_url): the admin database" in (
        _one_readable_line(stderr)
    )
