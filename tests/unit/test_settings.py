"""Settings read from the environment: the encryption key, owned shards, the name pattern,
tenants."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest
from pydantic import ValidationError

from services.rules.errors import ConfigurationError
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
    # Refused when the settings are read (a validator), before any service uses the key.
    with pytest.raises(ValidationError, match="base64"):
        Settings()


@pytest.mark.parametrize("length", [16, 24, 31, 33, 64])
def test_key_of_the_wrong_length_is_refused(monkeypatch: pytest.MonkeyPatch, length: int) -> None:
    monkeypatch.setenv(KEY_VARIABLE, _key_b64(os.urandom(length)))
    with pytest.raises(ValidationError, match="32 bytes"):
        Settings()


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


# --- tenants -----------------------------------------------------------------------------------

TWO_TENANTS = {
    "district-a": {
        "admin_database_url": "postgresql://postgres@db-a/EdFi_Admin",
        "ods_server_url": "postgresql://postgres@ods-a/postgres",
        "templates": {"Minimal": "Minimal_A"},
    },
    "District-B": {
        "admin_database_url": "postgresql://postgres@db/EdFi_Admin_B",
        "database_name_pattern": "EdFi_Ods_B_{name}",
        "clone_concurrency": 5,
    },
}


def _tenants(monkeypatch: pytest.MonkeyPatch, tenants: dict[str, Any]) -> Settings:
    monkeypatch.setenv("EDFI_IM_TENANTS", json.dumps(tenants))
    return Settings()


def test_no_tenants_is_single_tenant_mode_with_the_top_level_settings() -> None:
    settings = Settings()
    assert not settings.multi_tenant
    assert settings.tenant_settings() == {None: settings}
    assert settings.tenant is None


@pytest.mark.parametrize("value", ["", "  ", "{}"])
def test_an_empty_tenants_variable_is_single_tenant_mode(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("EDFI_IM_TENANTS", value)
    assert not Settings().multi_tenant


def test_tenants_that_are_not_json_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDFI_IM_TENANTS", "{district-a: {}}")
    with pytest.raises(ValidationError, match="EDFI_IM_TENANTS is not valid JSON"):
        Settings()


def test_each_tenant_gets_its_own_values_and_the_top_level_ones_it_does_not_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDFI_IM_CLONE_CONCURRENCY", "3")
    settings = _tenants(monkeypatch, TWO_TENANTS)
    assert settings.multi_tenant
    a, b = settings.tenant_settings()["district-a"], settings.tenant_settings()["District-B"]
    assert (a.tenant, b.tenant) == ("district-a", "District-B")
    assert a.admin_database_url == "postgresql://postgres@db-a/EdFi_Admin"
    assert a.ods_server_url == "postgresql://postgres@ods-a/postgres"
    assert a.templates == {"Minimal": "Minimal_A"}
    assert (a.database_name_pattern, a.clone_concurrency) == ("EdFi_Ods_{name}", 3)
    assert b.ods_server_url == settings.ods_server_url
    assert (b.database_name_pattern, b.clone_concurrency) == ("EdFi_Ods_B_{name}", 5)
    assert b.templates == settings.templates
    # A copy made from a tenant's settings stays that tenant's.
    assert b.model_copy(update={"scheduler_batch_size": 1}).tenant == "District-B"


def test_a_tenant_is_found_ignoring_case(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _tenants(monkeypatch, TWO_TENANTS)
    assert settings.find_tenant("district-b") == "District-B"
    assert settings.find_tenant("DISTRICT-A") == "district-a"
    assert settings.find_tenant("district-c") is None


@pytest.mark.parametrize(
    ("tenants", "message"),
    [
        ({"bad name": {"admin_database_url": "postgresql://x/A"}}, "letters, digits"),
        ({"a" * 51: {"admin_database_url": "postgresql://x/A"}}, "letters, digits"),
        (
            {"a": {"admin_database_url": "postgresql://x/A", "database_name_pattern": "A_{n}"}},
            "database_name_pattern must contain",
        ),
        ({"a": {"database_name_pattern": "A_{name}"}}, "admin_database_url"),
        ({"a": {"admin_database_url": "postgresql://x/A", "colour": "red"}}, "colour"),
        (
            {
                "a": {"admin_database_url": "postgresql://x/A", "database_name_pattern": "A{name}"},
                "A": {"admin_database_url": "postgresql://x/B", "database_name_pattern": "B{name}"},
            },
            "differ only in case",
        ),
        (
            {
                "a": {"admin_database_url": "postgresql://x/A", "database_name_pattern": "A{name}"},
                "b": {"admin_database_url": "postgresql://x/A", "database_name_pattern": "B{name}"},
            },
            "share an admin database",
        ),
        (
            {
                "a": {"admin_database_url": "postgresql://x/A"},
                "b": {"admin_database_url": "postgresql://x/B"},
            },
            "different database_name_pattern",
        ),
    ],
)
def test_unusable_tenants_are_refused_at_startup_naming_the_problem(
    monkeypatch: pytest.MonkeyPatch, tenants: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        _tenants(monkeypatch, tenants)


def test_tenants_on_different_servers_may_share_a_name_pattern(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _tenants(
        monkeypatch,
        {
            "a": {"admin_database_url": "postgresql://x/A", "ods_server_url": "postgresql://s1/p"},
            "b": {"admin_database_url": "postgresql://x/B", "ods_server_url": "postgresql://s2/p"},
        },
    )
    assert sorted(settings.tenants) == ["a", "b"]


def test_without_a_signing_key_development_signs_with_a_key_made_at_start_up() -> None:
    """No development signing key is public (anyone reaching the gateway could mint tokens with
    it): without EDFI_IM_JWT_SIGNING_KEY, development gets a random key of this process, and
    production refuses to start."""
    import subprocess
    import sys

    from services.rules.errors import ConfigurationError

    development = Settings(environment="development", jwt_signing_key=None)
    key = development.signing_key()
    assert len(key) >= 32 and key == development.signing_key()
    code = (
        "from services.runtime.settings import Settings; "
        "print(Settings(environment='development', jwt_signing_key=None).signing_key())"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert other and other != key  # another process, another key
    with pytest.raises(ConfigurationError):
        Settings(environment="production", jwt_signing_key=None).signing_key()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("EDFI_IM_ADMIN_DATABASE_URL", "mysql://db/EdFi_Admin", "PostgreSQL or SQL Server URL"),
        ("EDFI_IM_ADMIN_DATABASE_URL", "postgresql://db:5432/", "must name a database"),
        ("EDFI_IM_ODS_SERVER_URL", "not a url", "PostgreSQL or SQL Server URL"),
        ("EDFI_IM_RABBITMQ_URL", "http://broker:5672/", "RabbitMQ URL"),
        ("EDFI_IM_OIDC_ISSUER", "login.example.org", "HTTP URL"),
        ("EDFI_IM_JWT_SIGNING_KEY", "short", "at least 32 bytes"),
    ],
)
def test_urls_and_secrets_are_checked_when_the_settings_are_read(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=message):
        Settings()
