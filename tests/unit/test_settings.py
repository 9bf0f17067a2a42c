"""Settings read from the environment: the encryption key, owned shards, the name pattern."""

from __future__ import annotations

import base64
import os

import pytest
from pydantic import ValidationError

from services.runtime.errors import ConfigurationError
from services.runtime.settings import DEVELOPMENT_ENCRYPTION_KEY, Settings

KEY_VARIABLE = "ODS_CONNECTION_STRING_ENCRYPTION_KEY"


def _key_b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# --- encryption key ----------------------------------------------------------------------------


def test_development_key_decodes_to_32_bytes() -> None:
    assert len(base64.b64decode(DEVELOPMENT_ENCRYPTION_KEY, validate=True)) == 32


def test_production_is_the_default_environment() -> None:
    assert not Settings().is_development


def test_missing_key_outside_development_is_a_configuration_error() -> None:
    settings = Settings()
    with pytest.raises(ConfigurationError, match=KEY_VARIABLE):
        settings.encryption_key_bytes()


def test_empty_key_outside_development_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_VARIABLE, "")
    with pytest.raises(ConfigurationError):
        Settings().encryption_key_bytes()


def test_missing_key_in_development_uses_the_development_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDFI_IM_ENVIRONMENT", "development")
    settings = Settings()

    assert settings.encryption_key_bytes() == base64.b64decode(DEVELOPMENT_ENCRYPTION_KEY)
    assert settings.uses_development_key


def test_key_from_the_ods_variable_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = os.urandom(32)
    monkeypatch.setenv(KEY_VARIABLE, _key_b64(raw))
    settings = Settings()

    assert settings.encryption_key_bytes() == raw
    assert not settings.uses_development_key


def test_configured_key_wins_over_the_development_key(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = os.urandom(32)
    monkeypatch.setenv("EDFI_IM_ENVIRONMENT", "development")
    monkeypatch.setenv(KEY_VARIABLE, _key_b64(raw))

    assert Settings().encryption_key_bytes() == raw


@pytest.mark.parametrize("environment", ["production", "development"])
@pytest.mark.parametrize(
    "value",
    ["not base64 at all!", "AAAA AAAA", "****", "QUJ"],
    ids=["punctuation", "space", "stars", "bad-padding"],
)
def test_key_that_is_not_base64_is_refused(
    monkeypatch: pytest.MonkeyPatch, environment: str, value: str
) -> None:
    monkeypatch.setenv("EDFI_IM_ENVIRONMENT", environment)
    monkeypatch.setenv(KEY_VARIABLE, value)
    with pytest.raises(ConfigurationError, match="base64"):
        Settings().encryption_key_bytes()


@pytest.mark.parametrize("length", [16, 24, 31, 33, 64])
def test_key_of_the_wrong_length_is_refused(monkeypatch: pytest.MonkeyPatch, length: int) -> None:
    monkeypatch.setenv(KEY_VARIABLE, _key_b64(os.urandom(length)))
    with pytest.raises(ConfigurationError, match="32 bytes"):
        Settings().encryption_key_bytes()


def test_key_is_not_revealed_by_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    value = _key_b64(os.urandom(32))
    monkeypatch.setenv(KEY_VARIABLE, value)
    settings = Settings()

    assert value not in repr(settings)
    assert value not in str(settings.model_dump())


# --- owned shards ------------------------------------------------------------------------------


def test_no_owned_shards_means_every_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDFI_IM_SHARD_COUNT", "4")
    assert Settings().owned_shard_set() == [0, 1, 2, 3]


def test_owned_shards_reads_ranges_and_single_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDFI_IM_SHARD_COUNT", "8")
    monkeypatch.setenv("EDFI_IM_OWNED_SHARDS", "0-2,5")
    assert Settings().owned_shard_set() == [0, 1, 2, 5]


def test_owned_shards_tolerates_spaces_overlaps_and_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDFI_IM_SHARD_COUNT", "8")
    monkeypatch.setenv("EDFI_IM_OWNED_SHARDS", " 7 , 1-3, 2 ,")
    assert Settings().owned_shard_set() == [1, 2, 3, 7]


@pytest.mark.parametrize("owned", ["8", "0-8", "3,12", "100"])
def test_owned_shard_beyond_the_shard_count_is_refused(
    monkeypatch: pytest.MonkeyPatch, owned: str
) -> None:
    monkeypatch.setenv("EDFI_IM_SHARD_COUNT", "8")
    monkeypatch.setenv("EDFI_IM_OWNED_SHARDS", owned)
    with pytest.raises(ConfigurationError, match="OWNED_SHARDS"):
        Settings().owned_shard_set()


@pytest.mark.parametrize("owned", ["a", "1-", "-1", "1..3", "1;2", "0-2-4", "one", "1 2"])
def test_unreadable_owned_shards_are_refused(monkeypatch: pytest.MonkeyPatch, owned: str) -> None:
    monkeypatch.setenv("EDFI_IM_SHARD_COUNT", "8")
    monkeypatch.setenv("EDFI_IM_OWNED_SHARDS", owned)
    with pytest.raises(ConfigurationError, match="OWNED_SHARDS"):
        Settings().owned_shard_set()


def test_reversed_owned_shard_range_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDFI_IM_SHARD_COUNT", "8")
    monkeypatch.setenv("EDFI_IM_OWNED_SHARDS", "5-2")
    with pytest.raises(ConfigurationError):
        Settings().owned_shard_set()


# --- database name pattern ---------------------------------------------------------------------


def test_database_name_pattern_defaults_to_edfi_ods() -> None:
    assert Settings().database_name_pattern == "EdFi_Ods_{name}"


def test_database_name_pattern_from_the_environment_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDFI_IM_DATABASE_NAME_PATTERN", "Ods_Tenant1_{name}")
    assert Settings().database_name_pattern == "Ods_Tenant1_{name}"


@pytest.mark.parametrize("pattern", ["EdFi_Ods", "EdFi_Ods_{Name}", "EdFi_Ods_{}", ""])
def test_database_name_pattern_without_name_placeholder_is_refused(
    monkeypatch: pytest.MonkeyPatch, pattern: str
) -> None:
    monkeypatch.setenv("EDFI_IM_DATABASE_NAME_PATTERN", pattern)
    with pytest.raises(ValidationError, match="name"):
        Settings()


def test_database_name_pattern_with_an_unknown_placeholder_is_refused_at_startup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDFI_IM_DATABASE_NAME_PATTERN", "EdFi_Ods_{tenant}_{name}")
    with pytest.raises(ValidationError):
        Settings()


def test_invalid_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDFI_IM_ENVIRONMENT", "staging")
    with pytest.raises(ValidationError):
        Settings()
