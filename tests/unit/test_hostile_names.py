"""No instance name can reach SQL unquoted (invariant 6's first line of defence).

Two properties, over arbitrary text (hypothesis): the API's name rule accepts only ASCII letters,
digits, space and underscore; and whatever name the provisioner is handed - even one the API
would refuse - every statement it sends has that name only as a quoted identifier."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from services.rules.marker import Marker
from services.rules.naming import database_name, name_problem
from services.runtime.ods_server import PostgresSession

SAFE = re.compile(r"^[A-Za-z0-9 _]+$")


@given(st.text(max_size=80))
@settings(max_examples=2000)
def test_the_name_rule_accepts_only_plain_ascii(name: str) -> None:
    if name_problem(name) is None:
        assert SAFE.fullmatch(name) and len(name) <= 46 and name.strip()


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class Recorder:
    """A psycopg connection that only records the statements it is given."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, tuple[object, ...]]] = []

    async def execute(self, statement: Any, params: tuple[object, ...] = ()) -> None:
        text = statement.as_string(None) if isinstance(statement, sql.Composable) else statement
        self.statements.append((text, params))


names = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    min_size=1,
    max_size=63,
)


@given(old=names, new=names)
@settings(max_examples=500)
def test_every_statement_quotes_the_names_it_is_given(old: str, new: str) -> None:
    recorder = Recorder()
    session = PostgresSession(recorder)  # type: ignore[arg-type]

    async def run() -> None:
        await session.clone(old, new)
        await session.mark(new, Marker(1, uuid.UUID(int=1)))
        await session.rename(old, new)
        await session.close_connections(old)
        await session.allow_connections(new)
        await session.drop(old)

    asyncio.run(run())
    expected = [
        f"CREATE DATABASE {_quoted(new)} TEMPLATE {_quoted(old)}",
        f"ALTER DATABASE {_quoted(old)} RENAME TO {_quoted(new)}",
        f"ALTER DATABASE {_quoted(old)} WITH ALLOW_CONNECTIONS false",
        f"ALTER DATABASE {_quoted(new)} WITH ALLOW_CONNECTIONS true",
        f"DROP DATABASE IF EXISTS {_quoted(old)} WITH (FORCE)",
    ]
    texts = [text for text, _ in recorder.statements]
    for statement in expected:
        assert statement in texts
    comment = next(t for t in texts if t.startswith("COMMENT ON DATABASE"))
    assert comment.startswith(f"COMMENT ON DATABASE {_quoted(new)} IS '")
    # The one statement with a plain parameter passes the name as a bound value, not as SQL.
    [(terminate, params)] = [(t, p) for t, p in recorder.statements if "pg_terminate_backend" in t]
    assert terminate == (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()"
    )
    assert params == (old,)


@given(st.from_regex(r"[A-Za-z0-9 _]{1,46}", fullmatch=True))
def test_an_accepted_name_maps_to_a_database_name_of_the_same_safe_characters(name: str) -> None:
    if name_problem(name) is None:
        assert re.fullmatch(r"EdFi_Ods_[A-Za-z0-9_]+", database_name(name, "EdFi_Ods_{name}"))
