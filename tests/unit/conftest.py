"""Unit-test fixtures: no network, no PostgreSQL, no RabbitMQ, no leaking environment."""

from __future__ import annotations

import os

import pytest

ENCRYPTION_KEY_VARIABLE = "ODS_CONNECTION_STRING_ENCRYPTION_KEY"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every setting from the environment so the machine's own settings don't leak in."""
    for name in list(os.environ):
        if name.upper().startswith("EDFI_IM_") or name.upper() == ENCRYPTION_KEY_VARIABLE:
            monkeypatch.delenv(name, raising=False)
