"""The tests' forked `edfi-im` (tests/support/forked.py) answers as a new interpreter does: the
same exit code and output for the same command and environment, the environment it was given and
no other, and a process of its own."""

from __future__ import annotations

import os

from tests.support import forked

BAD = {"EDFI_IM_ENVIRONMENT": "development", "EDFI_IM_SHARD_COUNT": "none"}


def _env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDFI_IM_")}
    return {**clean, **extra}


def test_a_forked_command_answers_as_a_new_interpreter_does() -> None:
    warm = forked.cli(["migrate"], _env(**BAD))
    cold = forked.cli(["migrate"], _env(**BAD, EDFI_IM_TEST_SPAWN="exec"))
    assert warm.returncode == cold.returncode == 2
    assert warm.stderr == cold.stderr
    assert "EDFI_IM_SHARD_COUNT" in warm.stderr
    assert warm.stdout == cold.stdout == ""


def test_a_forked_command_sees_only_the_environment_it_was_given() -> None:
    # The same command, its mistake fixed in its own environment only: another mistake now.
    fixed = forked.cli(
        ["migrate"], _env(**{**BAD, "EDFI_IM_SHARD_COUNT": "4"}, EDFI_IM_TENANTS="{")
    )
    assert fixed.returncode == 2
    assert "EDFI_IM_SHARD_COUNT" not in fixed.stderr and "EDFI_IM_TENANTS" in fixed.stderr
    again = forked.cli(["migrate"], _env(**BAD))
    assert "EDFI_IM_SHARD_COUNT" in again.stderr
