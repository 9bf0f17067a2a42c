"""What an engine sends: the statements, and (on request) the transactions it begins and commits,
while a block runs (the round-trip counts of issue 18's tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.event import listen, remove
from sqlalchemy.ext.asyncio import AsyncEngine


@contextmanager
def sent_statements(engine: AsyncEngine, *, transactions: bool = False) -> Iterator[list[str]]:
    """Every statement the engine sends meanwhile, in order; with `transactions`, also each
    transaction it begins or commits outside autocommit (as "BEGIN" / "COMMIT")."""
    sent: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        sent.append(statement)

    def marker(word: str) -> Any:
        def mark(conn: Any) -> None:
            if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
                sent.append(word)

        return mark

    hooks: list[tuple[str, Any]] = [("before_cursor_execute", record)]
    if transactions:
        hooks += [("begin", marker("BEGIN")), ("commit", marker("COMMIT"))]
    for name, hook in hooks:
        listen(engine.sync_engine, name, hook)
    try:
        yield sent
    finally:
        for name, hook in hooks:
            remove(engine.sync_engine, name, hook)


@contextmanager
def pinged_checkouts(engine: AsyncEngine) -> Iterator[list[bool]]:
    """For each connection the engine checks out meanwhile, whether it was pinged first (the
    pre-ping, `services/admin_db/engine.py`) or not (`alone`, `read_all`, `unit_of_work`)."""
    from services.admin_db import engine as admin_engine

    pinged: list[bool] = []

    def checkout(*_: object) -> None:
        pinged.append(not admin_engine._UNPINGED.get())

    listen(engine.sync_engine.pool, "checkout", checkout)
    try:
        yield pinged
    finally:
        remove(engine.sync_engine.pool, "checkout", checkout)
