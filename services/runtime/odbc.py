"""SQL Server through ODBC (unixODBC with FreeTDS's driver or Microsoft's, via aioodbc): the
connection string a `mssql://` URL stands for, connections that run DDL in autocommit with no
command time-out, and what a driver error means (worth another try or not).

URLs: `mssql://user:password@host:1433/master?driver=FreeTDS&TrustServerCertificate=yes`
(`mssql+aioodbc://` and `mssql+pyodbc://` alike). The query's keys are ODBC keywords passed on
as they are; `driver` defaults to FreeTDS.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from services.rules.errors import PermanentError, TransientError

SCHEMES = ("mssql", "mssql+aioodbc", "mssql+pyodbc")
DEFAULT_DRIVER = "FreeTDS"
DEFAULT_PORT = 1433
# FreeTDS speaks the TDS version it is told (7.4: SQL Server 2012 and later, Azure SQL).
FREETDS_DEFAULTS = {"TDS_Version": "7.4", "ClientCharset": "UTF-8"}
# Seconds to wait for a login; a command itself has no time-out (a restore may take an hour).
LOGIN_TIMEOUT = 15

# ODBC SQLSTATEs a retry can cure: the connection (class 08), a deadlock victim or a
# serialization failure (40001), a lock or command time-out (HYT00, HYT01).
TRANSIENT_SQLSTATES = frozenset({"40001", "HYT00", "HYT01"})
TRANSIENT_CLASSES = ("08",)
# SQL Server error numbers a retry can cure: deadlock (1205), lock request time-out (1222),
# database in use / could not be locked exclusively (5030, 3101, 924), database being recovered
# or not yet online (922, 927, 40613 on Azure), too busy (40501, 49918-49920), restore of a
# database another session restores (3183 no; 4319), connection-level (233, 10053, 10054, 10060).
TRANSIENT_NUMBERS = frozenset(
    {
        1205,
        1222,
        5030,
        3101,
        924,
        922,
        927,
        40613,
        40501,
        49918,
        49919,
        49920,
        233,
        10053,
        10054,
        10060,
        10061,
        20009,
        20003,
    }
)


def is_mssql_url(url: str) -> bool:
    return urlsplit(url).scheme in SCHEMES


def _braced(value: str) -> str:
    """An ODBC attribute value: in braces (`}` doubled) when it needs them."""
    if any(c in value for c in ";{}=") or value != value.strip():
        return "{" + value.replace("}", "}}") + "}"
    return value


def connection_string(url: str, database: str | None = None) -> str:
    """The ODBC connection string of a `mssql://` URL (for another database when given)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ValueError("must be a SQL Server URL (mssql://user:password@host:1433/database)")
    options = {k: v for k, v in parse_qsl(parts.query, keep_blank_values=True)}
    driver = next((options.pop(k) for k in list(options) if k.lower() == "driver"), DEFAULT_DRIVER)
    freetds = "freetds" in driver.lower() or driver.lower().endswith("libtdsodbc.so")
    port = parts.port or DEFAULT_PORT
    fields: dict[str, str] = {"DRIVER": "{" + driver.replace("}", "}}") + "}"}
    if freetds:
        fields["SERVER"] = parts.hostname
        fields["PORT"] = str(port)
    else:  # Microsoft's driver: host,port
        fields["SERVER"] = f"{parts.hostname},{port}"
    name = database if database is not None else unquote(parts.path.lstrip("/"))
    if name:
        fields["DATABASE"] = _braced(name)
    if parts.username:
        fields["UID"] = _braced(unquote(parts.username))
    if parts.password:
        fields["PWD"] = _braced(unquote(parts.password))
    if freetds:
        for key, value in FREETDS_DEFAULTS.items():
            if not any(k.lower() == key.lower() for k in options):
                fields[key] = value
    for key, value in options.items():
        fields[key] = _braced(value)
    return ";".join(f"{k}={v}" for k, v in fields.items())


def database_of_url(url: str) -> str:
    """The database a `mssql://` URL names (master when it names none)."""
    return unquote(urlsplit(url).path.lstrip("/")) or "master"


async def connect(dsn: str, *, autocommit: bool = True) -> Any:
    """An aioodbc connection; autocommit (RESTORE, BACKUP, CREATE/ALTER/DROP DATABASE cannot
    run in a transaction) and no command time-out. Driver errors come out classified."""
    import aioodbc  # imported here: needs unixODBC's libodbc, loaded only for SQL Server

    try:
        conn = await aioodbc.connect(dsn=dsn, autocommit=autocommit, timeout=LOGIN_TIMEOUT)
    except Exception as exc:
        raise classify(exc) from exc
    conn._conn.timeout = 0  # pyodbc's command time-out: none (0), whatever a driver defaults to
    return conn


def details(exc: BaseException) -> tuple[str | None, int | None, str]:
    """(SQLSTATE, SQL Server error number, message) of a pyodbc error."""
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    state = str(args[0]) if len(args) >= 2 and isinstance(args[0], str) else None
    message = str(args[1]) if len(args) >= 2 else str(exc)
    number = None
    # "[FreeTDS][SQL Server]Message (1205) (SQLExecDirectW)": the native error in parentheses.
    for token in reversed(message.replace("(", " ( ").replace(")", " ) ").split()):
        if token.isdigit():
            number = int(token)
            break
    return state, number, message


def is_transient_error(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    state, number, _ = details(exc)
    if state and (state in TRANSIENT_SQLSTATES or state.startswith(TRANSIENT_CLASSES)):
        return True
    return number in TRANSIENT_NUMBERS


def classify(exc: BaseException) -> Exception:
    """Wrap a driver error as transient (the server unreachable, a dropped connection, a
    deadlock, a database in use) or permanent."""
    if isinstance(exc, TransientError | PermanentError):
        return exc
    state, _, message = details(exc)
    text = f"{message.strip()}" + (f" (SQLSTATE {state})" if state else "")
    if is_transient_error(exc):
        return TransientError(f"SQL Server: {text}")
    return PermanentError(f"SQL Server: {text}")
