"""`edfi-im clients`: how an operator adds API clients when self-registration is off. The secret
comes from the environment (or a prompt), is checked by the same rules, and is stored hashed."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from tests.support import forked, pg

pytestmark = pytest.mark.integration

SECRET = "Operator-Chosen-Secret-0123456789!"


def _cli(
    settings_env: dict[str, str], *args: str, secret: str = SECRET
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env, "EDFI_IM_CLIENT_SECRET": secret}
    return forked.cli(["clients", *args], env)


def test_add_list_and_remove_a_client(settings_env: dict[str, str], admin_database: str) -> None:
    client_id = f"ops-{uuid.uuid4().hex[:8]}"
    added = _cli(settings_env, "add", client_id, "--name", "Nightly scripts", "--tenants", "a,b")
    assert added.returncode == 0, added.stderr
    assert SECRET not in added.stdout + added.stderr
    [(stored, tenants)] = pg.query(
        admin_database,
        "SELECT secret_hash, tenants FROM edfi_im.clients WHERE client_id = %s",
        (client_id,),
    )
    assert stored.startswith("$argon2id$") and tenants == ["a", "b"]
    assert _cli(settings_env, "add", client_id).returncode == 1  # taken
    listed = _cli(settings_env, "list")
    assert client_id in listed.stdout and SECRET not in listed.stdout
    assert _cli(settings_env, "remove", client_id).returncode == 0
    assert _cli(settings_env, "remove", client_id).returncode == 1
    assert client_id not in _cli(settings_env, "list").stdout


def test_a_weak_secret_is_refused_and_nothing_stored(
    settings_env: dict[str, str], admin_database: str
) -> None:
    client_id = f"weak-{uuid.uuid4().hex[:8]}"
    refused = _cli(settings_env, "add", client_id, secret="password")
    assert refused.returncode == 2 and "ClientSecret" in refused.stderr
    assert "password" not in refused.stderr.replace("ClientSecret", "")
    rows = pg.query(
        admin_database, "SELECT count(*) FROM edfi_im.clients WHERE client_id = %s", (client_id,)
    )
    assert rows[0][0] == 0
