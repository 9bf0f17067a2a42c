"""The Npgsql connection string written to dbo.odsinstances."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from services.rules.connection_strings import (
    ods_connection_string,
    parse_connection_string,
    quoting_warning,
    shared_credentials_warning,
)
from services.runtime.settings import Settings

TRICKY_VALUES = [
    "plain",
    "semi;colon",
    "equals=sign",
    "a;b=c",
    "it's",
    'say "hi"',
    '"',
    '""',
    "'",
    "'quoted'",
    '"quoted"',
    ";",
    "=",
    ";;==",
    " leading space",
    "trailing space ",
    "  ",
    "p@ss:w/rd?#&%",
    "100%",
    "pässwörd 日本",
    "back\\slash",
    "mix;of=every'thing\"here",
    "x=;y",
]


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(f"EDFI_IM_{name.upper()}", value)
    return Settings()


def _server_url(user: str, password: str | None, host: str = "ods.example.org") -> str:
    auth = quote(user, safe="")
    if password is not None:
        auth += ":" + quote(password, safe="")
    return f"postgresql://{auth}@{host}:6432/postgres"


def test_connection_string_has_server_credentials_database_and_options_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(
        monkeypatch,
        ods_server_url="postgresql://edfi:pw@ods.example.org:6432/postgres",
        ods_connection_string_options="pooling=true;Application Name=EdFi.Ods.WebApi",
    )

    value = ods_connection_string(settings, "EdFi_Ods_Grand_Bend")
    parsed = parse_connection_string(value)

    assert list(parsed) == [
        "host",
        "port",
        "username",
        "password",
        "database",
        "pooling",
        "application name",
    ]
    assert parsed == {
        "host": "ods.example.org",
        "port": "6432",
        "username": "edfi",
        "password": "pw",
        "database": "EdFi_Ods_Grand_Bend",
        "pooling": "true",
        "application name": "EdFi.Ods.WebApi",
    }


def test_connection_string_has_no_password_when_the_url_has_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(monkeypatch, ods_server_url="postgresql://edfi@ods.example.org/postgres")

    parsed = parse_connection_string(ods_connection_string(settings, "EdFi_Ods_X"))

    assert "password" not in parsed
    assert parsed["username"] == "edfi"
    assert parsed["database"] == "EdFi_Ods_X"


def test_connection_string_defaults_port_and_user(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, ods_server_url="postgresql://ods.example.org/postgres")

    parsed = parse_connection_string(ods_connection_string(settings, "EdFi_Ods_X"))

    assert parsed["host"] == "ods.example.org"
    assert parsed["port"] == "5432"
    assert parsed["username"] == "postgres"


def test_connection_string_names_the_instance_database_not_the_server_url_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(monkeypatch, ods_server_url="postgresql://u:p@h:5432/postgres")
    parsed = parse_connection_string(ods_connection_string(settings, "EdFi_Ods_Other"))
    assert parsed["database"] == "EdFi_Ods_Other"


def test_empty_options_add_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(
        monkeypatch,
        ods_server_url="postgresql://u:p@h:5432/postgres",
        ods_connection_string_options="",
    )
    value = ods_connection_string(settings, "EdFi_Ods_X")
    assert list(parse_connection_string(value)) == [
        "host",
        "port",
        "username",
        "password",
        "database",
    ]
    assert not value.endswith(";")


def test_options_with_surrounding_semicolons_do_not_make_empty_entries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(
        monkeypatch,
        ods_server_url="postgresql://u:p@h:5432/postgres",
        ods_connection_string_options=";Timeout=30;",
    )
    value = ods_connection_string(settings, "EdFi_Ods_X")
    assert ";;" not in value
    assert not value.endswith(";")
    assert parse_connection_string(value)["timeout"] == "30"


def test_template_setting_replaces_the_database_placeholder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(
        monkeypatch,
        ods_server_url="postgresql://ignored:ignored@ignored:1/postgres",
        ods_connection_string_template="host=ods-read;port=5432;database={database};pooling=false",
    )

    value = ods_connection_string(settings, "EdFi_Ods_Grand_Bend")

    assert value == "host=ods-read;port=5432;database=EdFi_Ods_Grand_Bend;pooling=false"
    assert "ignored" not in value


@pytest.mark.parametrize("password", TRICKY_VALUES)
def test_tricky_password_round_trips_exactly(
    monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    settings = _settings(monkeypatch, ods_server_url=_server_url("edfi", password))

    parsed = parse_connection_string(ods_connection_string(settings, "EdFi_Ods_Grand_Bend"))

    assert parsed["password"] == password
    # The value must not swallow or disturb its neighbours.
    assert parsed["username"] == "edfi"
    assert parsed["database"] == "EdFi_Ods_Grand_Bend"
    assert parsed["application name"] == "EdFi.Ods.WebApi"


@pytest.mark.parametrize("user", ["ed;fi", "ed=fi", "o'brien", 'd"q', " pad "])
def test_tricky_username_round_trips_exactly(monkeypatch: pytest.MonkeyPatch, user: str) -> None:
    settings = _settings(monkeypatch, ods_server_url=_server_url(user, "pw"))

    parsed = parse_connection_string(ods_connection_string(settings, "EdFi_Ods_X"))

    assert parsed["username"] == user
    assert parsed["password"] == "pw"


@pytest.mark.parametrize("database", ["EdFi_Ods_Grand_Bend", "Ods;x=1", 'Ods "q"', "Ods Space"])
def test_database_name_round_trips_exactly(monkeypatch: pytest.MonkeyPatch, database: str) -> None:
    settings = _settings(monkeypatch, ods_server_url=_server_url("edfi", "pw"))

    parsed = parse_connection_string(ods_connection_string(settings, database))

    assert parsed["database"] == database
    assert parsed["pooling"] == "true"


def test_quoted_password_cannot_inject_another_key(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, ods_server_url=_server_url("edfi", "x;host=evil.example"))

    parsed = parse_connection_string(ods_connection_string(settings, "EdFi_Ods_X"))

    assert parsed["host"] == "ods.example.org"
    assert parsed["password"] == "x;host=evil.example"


def test_parse_reads_keys_case_insensitively_and_trims_plain_values() -> None:
    assert parse_connection_string("Host = db ; Port=5432;DATABASE=EdFi") == {
        "host": "db",
        "port": "5432",
        "database": "EdFi",
    }


def test_parse_reads_double_quoted_values_with_doubled_quotes() -> None:
    assert parse_connection_string('password="a;b=""c""";database=d') == {
        "password": 'a;b="c"',
        "database": "d",
    }


@pytest.mark.parametrize("password", ["p;w", "a=b", 'say"hi', "it's", " padded "])
def test_credentials_other_tools_may_misread_are_warned_about(
    monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    settings = _settings(monkeypatch, ods_server_url=_server_url("edfi", password))
    warning = quoting_warning(settings)
    assert warning is not None
    assert "password" in warning
    assert "edfi-oneroster" in warning
    assert "EDFI_IM_ODS_CONNECTION_STRING_TEMPLATE" in warning
    assert password.strip() not in warning  # the warning never shows the secret


def test_plain_credentials_and_plain_templates_need_no_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain = _settings(monkeypatch, ods_server_url=_server_url("edfi", "Plain-Pa55word"))
    assert quoting_warning(plain) is None
    template = _settings(
        monkeypatch,
        ods_connection_string_template="host=ods;username=edfi;database={database}",
    )
    assert quoting_warning(template) is None
    quoted = _settings(
        monkeypatch,
        ods_connection_string_template='host=ods;password="a;b";database={database}',
    )
    assert "quoted value" in (quoting_warning(quoted) or "")


def test_the_odsapi_gets_its_own_credentials_when_they_are_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = _server_url("edfi_admin_owner", "Owner-Secret-1")
    shared = _settings(monkeypatch, ods_server_url=server)
    assert "username=edfi_admin_owner" in ods_connection_string(shared, "EdFi_Ods_X")
    warning = shared_credentials_warning(shared)
    assert warning is not None and "EDFI_IM_ODS_API_USERNAME" in warning
    assert "Owner-Secret-1" not in warning
    own = _settings(
        monkeypatch,
        ods_server_url=server,
        ods_api_username="edfi_ods_api",
        ods_api_password="Api-Secret;2",
    )
    written = ods_connection_string(own, "EdFi_Ods_X")
    assert parse_connection_string(written)["username"] == "edfi_ods_api"
    assert parse_connection_string(written)["password"] == "Api-Secret;2"
    assert "Owner-Secret-1" not in written
    assert shared_credentials_warning(own) is None
    assert "password" in (quoting_warning(own) or "")  # its ';' is what gets quoted now
