"""SQL Server in the settings and the connection strings: `mssql://` URLs for both roles, the
SqlClient connection string the ODS/API reads (encrypted as the Npgsql one is), the ODBC
connection string aioodbc opens, and what an ODBC error means."""

from __future__ import annotations

import os
from urllib.parse import quote

import pytest
from pydantic import ValidationError

from services.rules import crypto
from services.rules.connection_strings import (
    ods_connection_string,
    parse_connection_string,
    place_of,
)
from services.runtime import odbc
from services.runtime.settings import Settings

KEY = os.urandom(32)
SERVER = "mssql://edfi_im:s3cret@sql.example.org:1433/master"


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name in list(os.environ):
        if name.startswith("EDFI_IM_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(f"EDFI_IM_{name.upper()}", value)
    return Settings()


def test_both_roles_take_sql_server_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(
        monkeypatch,
        admin_database_url="mssql+aioodbc://sa:pw@sql.example.org/EdFi_Admin",
        ods_server_url="mssql://sa:pw@sql.example.org",
        sqlserver_template_backups='{"EdFi_Ods_Minimal_Template": "/var/opt/mssql/backup/M.bak"}',
    )
    assert settings.sqlserver_template_backups == {
        "EdFi_Ods_Minimal_Template": "/var/opt/mssql/backup/M.bak"
    }
    protected = settings.protected_databases(settings.ods_server_url)
    for system in ("master", "model", "msdb", "tempdb"):
        assert system in protected
    assert "edfi_admin" in protected, "the admin database on the same server is never touched"


def test_an_admin_database_url_must_name_its_database(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="must name a database"):
        _settings(monkeypatch, admin_database_url="mssql://sa:pw@sql.example.org")


@pytest.mark.parametrize("password", ["plain", "semi;colon", 'say "hi"', "it's", " pad "])
def test_sqlclient_connection_string_round_trips_through_encryption(
    monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    settings = _settings(
        monkeypatch,
        ods_server_url=SERVER,
        ods_api_username="edfi_api",
        ods_api_password=password,
        ods_connection_string_options="Encrypt=true;TrustServerCertificate=true",
    )
    plain = ods_connection_string(settings, "EdFi_Ods_Grand_Bend")
    assert plain.startswith("Server=sql.example.org,1433;Database=EdFi_Ods_Grand_Bend;")
    assert plain.endswith(";Encrypt=true;TrustServerCertificate=true")
    parts = parse_connection_string(plain)
    assert parts["user id"] == "edfi_api"
    assert parts["password"] == password
    place, problem = place_of(crypto.encrypt(plain, KEY), KEY)
    assert problem is None and place is not None
    assert (place.host, place.port, place.database) == (
        "sql.example.org",
        "1433",
        "EdFi_Ods_Grand_Bend",
    )


@pytest.mark.parametrize(
    ("server", "host", "port"),
    [
        ("tcp:sql.example.org,1444", "sql.example.org", "1444"),
        ("sql.example.org\\SQLEXPRESS", "sql.example.org", "1433"),
        ("(local)", "(local)", "1433"),
    ],
)
def test_sqlclient_server_forms_are_read(server: str, host: str, port: str) -> None:
    plain = f"Data Source={server};Initial Catalog=EdFi_Ods_X;Integrated Security=true"
    place, _ = place_of(crypto.encrypt(plain, KEY), KEY)
    assert place is not None
    assert (place.host, place.port, place.database) == (host, port, "EdFi_Ods_X")


def test_odbc_connection_string_for_freetds() -> None:
    password = "p;w}d"
    dsn = odbc.connection_string(f"mssql://sa:{quote(password)}@db.example.org:1444/master")
    assert dsn == (
        "DRIVER={FreeTDS};SERVER=db.example.org;PORT=1444;DATABASE=master;UID=sa;"
        "PWD={p;w}}d};TDS_Version=7.4;ClientCharset=UTF-8"
    )


def test_odbc_connection_string_for_microsofts_driver_with_options() -> None:
    url = (
        "mssql+aioodbc://sa:pw@db.example.org/EdFi_Admin"
        "?driver=ODBC+Driver+18+for+SQL+Server&Encrypt=yes&TrustServerCertificate=yes"
    )
    assert odbc.connection_string(url) == (
        "DRIVER={ODBC Driver 18 for SQL Server};SERVER=db.example.org,1433;"
        "DATABASE=EdFi_Admin;UID=sa;PWD=pw;Encrypt=yes;TrustServerCertificate=yes"
    )
    assert "DATABASE=EdFi_Ods_X;" in odbc.connection_string(url, "EdFi_Ods_X")


class OdbcError(Exception):
    """pyodbc's form: (SQLSTATE, message)."""


@pytest.mark.parametrize(
    ("state", "message", "transient"),
    [
        ("08S01", "[FreeTDS][SQL Server]Unable to connect (20009) (SQLDriverConnect)", True),
        ("08001", "[FreeTDS][SQL Server]Unable to connect to data source (0)", True),
        ("40001", "[SQL Server]Transaction was deadlocked (1205) (SQLExecDirectW)", True),
        ("42000", "[SQL Server]The database could not be exclusively locked (5030)", True),
        ("HYT00", "[SQL Server]Query timeout expired (0)", True),
        ("42000", "[SQL Server]Database 'x' already exists (1801) (SQLExecDirectW)", False),
        ("23000", "[SQL Server]Violation of UNIQUE KEY constraint (2627)", False),
        ("42000", "[SQL Server]Cannot open backup device (3201) (SQLExecDirectW)", False),
    ],
)
def test_odbc_errors_are_classified(state: str, message: str, transient: bool) -> None:
    error = odbc.classify(OdbcError(state, message))
    assert type(error).__name__ == ("TransientError" if transient else "PermanentError")
    assert f"SQLSTATE {state}" in str(error)
