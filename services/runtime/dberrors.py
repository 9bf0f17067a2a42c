"""What an admin-database error means: worth another try (a lost connection, a restarting
server, a deadlock), or a refusal that retrying cannot cure (a foreign key, a unique index, a
value too long for its column, a missing table), told in words without the statement or its
values (they may hold connection strings)."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, OperationalError

from services.runtime import odbc

# SQLSTATEs a retry can cure: connection exceptions (class 08), serialization failures and
# deadlocks (40001, 40P01), lock timeouts, a server shutting down or starting, too many
# connections and other insufficient resources (class 53).
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03"})
TRANSIENT_CLASSES = ("08", "53")

KINDS = {
    "23503": "a foreign key",
    "23505": "a unique index",
    "23502": "a NOT NULL column",
    "23514": "a check constraint",
    "22001": "a value longer than its column allows",
    "22003": "a number out of its column's range",
    "42P01": "a table that does not exist",
    "42703": "a column that does not exist",
    "42501": "a missing privilege",
}


def _driver_error(exc: BaseException) -> BaseException | None:
    """asyncpg's (or psycopg's) own exception under SQLAlchemy's wrapper."""
    orig: BaseException | None = getattr(exc, "orig", None)
    if orig is None:
        return None
    cause = orig.__cause__
    return cause if cause is not None and getattr(cause, "sqlstate", None) else orig


# SQL Server's error numbers (pyodbc gives SQLSTATE 23000 for every integrity refusal).
MSSQL_KINDS = {
    547: ("23503", "a foreign key or check constraint"),
    2601: ("23505", "a unique index"),
    2627: ("23505", "a unique index"),
    515: ("23502", "a NOT NULL column"),
    8152: ("22001", "a value longer than its column allows"),
    2628: ("22001", "a value longer than its column allows"),
    8115: ("22003", "a number out of its column's range"),
    208: ("42P01", "a table that does not exist"),
    207: ("42703", "a column that does not exist"),
    229: ("42501", "a missing privilege"),
}


def _is_odbc(driver: BaseException | None) -> bool:
    """pyodbc's errors: args are (SQLSTATE, message)."""
    args: tuple[object, ...] = tuple(getattr(driver, "args", ()))
    return (
        driver is not None
        and type(driver).__module__.split(".")[0] == "pyodbc"
        and len(args) >= 2
        and isinstance(args[0], str)
    )


def _mssql_number(driver: BaseException) -> int | None:
    return odbc.details(driver)[1]


def sqlstate(exc: BaseException) -> str | None:
    driver = _driver_error(exc)
    if _is_odbc(driver):
        assert driver is not None
        number = _mssql_number(driver)
        if number in MSSQL_KINDS:
            return MSSQL_KINDS[number][0]
        return str(driver.args[0])
    state = getattr(driver, "sqlstate", None) if driver is not None else None
    return str(state) if state else None


def is_transient(exc: BaseException) -> bool:
    """Connection losses, a restarting server, deadlocks: worth another try."""
    if isinstance(exc, ConnectionError | OSError | TimeoutError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    driver = _driver_error(exc)
    if _is_odbc(driver):
        assert driver is not None
        return odbc.is_transient_error(driver)
    state = sqlstate(exc)
    if state is None:
        return isinstance(exc, OperationalError)
    return state in TRANSIENT_SQLSTATES or state.startswith(TRANSIENT_CLASSES)


def describe(exc: BaseException) -> str:
    """The refusal in words: what kind, on which table and constraint, and the server's message
    and detail (never the SQL statement or its parameters)."""
    if not isinstance(exc, DBAPIError):
        return f"{type(exc).__name__}: {str(exc)[:500]}"
    driver = _driver_error(exc)
    state = sqlstate(exc)
    if _is_odbc(driver):
        assert driver is not None
        message = odbc.details(driver)[2].strip()
    else:
        message = (getattr(driver, "message", None) or str(driver or exc).splitlines()[0]).strip()
    parts = [f"the admin database refused it ({KINDS.get(state or '', 'SQLSTATE')}"]
    if state:
        parts[0] += f" {state}" if state not in KINDS else f", SQLSTATE {state}"
    parts[0] += ")"
    table = getattr(driver, "table_name", None)
    schema = getattr(driver, "schema_name", None)
    constraint = getattr(driver, "constraint_name", None)
    if table:
        parts.append(f"table {schema + '.' if schema else ''}{table}")
    if constraint:
        parts.append(f"constraint {constraint}")
    text = ", ".join(parts) + f": {message}"
    detail = getattr(driver, "detail", None)
    # "Failing row contains (…)" repeats every value of the row: left out.
    if detail and not str(detail).startswith("Failing row contains"):
        text += f" ({detail})"
    return text[:1500]
