"""PostgreSQL helpers for tests (synchronous psycopg on a server's maintenance database).

`Server` works on one PostgreSQL server, given by the URL of its maintenance database; the
module-level functions work on the machine's local server (`LOCAL`). The fault suite uses the
`Server` of a cluster of its own (tests/support/own_postgres.py)."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class Server:
    url: str = SERVER  # the maintenance database's URL

    def database_url(self, name: str) -> str:
        return f"{self.url.rsplit('/', 1)[0]}/{name}"

    def edfi_admin(self, name: str, *, migrated: bool = True) -> str:
        """A new EdFi_Admin database: Ed-Fi 7.3.2's own dbo tables (the development copy, with
        Ed-Fi's constraints), then this system's migrations unless `migrated` is False. Its
        URL."""
        from services.admin_db.migrate import create_edfi_admin_copy, ensure_database, migrate

        url = self.database_url(name)
        ensure_database(url)
        create_edfi_admin_copy(url)
        if migrated:
            migrate(url)
        return url

    def exists(self, name: str) -> bool:
        with psycopg.connect(self.url, autocommit=True) as c:
            return (
                c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
                is not None
            )

    def comment(self, name: str) -> str | None:
        with psycopg.connect(self.url, autocommit=True) as c:
            row = c.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                (name,),
            ).fetchone()
            return None if row is None else row[0]

    def create(self, name: str, comment_text: str | None = None) -> None:
        with psycopg.connect(self.url, autocommit=True) as c:
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            if comment_text is not None:
                c.execute(
                    sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                        sql.Identifier(name), sql.Literal(comment_text)
                    )
                )

    def drop(self, name: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as c:
            c.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def drop_all(self, names: Iterable[str], workers: int = 8) -> None:
        """Drop databases side by side: each DROP DATABASE waits for a checkpoint (about a
        second), and drops asked for together share one."""
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(self.drop, names))

    def databases_like(self, pattern: str) -> list[str]:
        with psycopg.connect(self.url, autocommit=True) as c:
            rows = c.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (pattern,)
            ).fetchall()
            return [r[0] for r in rows]

    def query(
        self, database: str, statement: str, params: tuple[object, ...] = ()
    ) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url(database), autocommit=True) as c:
            return c.execute(statement, params).fetchall()

    def execute(
        self, database: str, statement: str, params: tuple[object, ...] | None = None
    ) -> None:
        with psycopg.connect(self.database_url(database), autocommit=True) as c:
            c.execute(statement, params)

    def clone_slots(self, slots: int, rabbitmq_url: str) -> HeldCloneSlots:
        return HeldCloneSlots(slots, rabbitmq_url, server=self.url)


LOCAL = Server()


def database_url(name: str) -> str:
    return LOCAL.database_url(name)


def edfi_admin(name: str, *, migrated: bool = True) -> str:
    return LOCAL.edfi_admin(name, migrated=migrated)


def exists(name: str) -> bool:
    return LOCAL.exists(name)


def comment(name: str) -> str | None:
    return LOCAL.comment(name)


def create(name: str, comment_text: str | None = None) -> None:
    LOCAL.create(name, comment_text)


def drop(name: str) -> None:
    LOCAL.drop(name)


def drop_all(names: Iterable[str]) -> None:
    LOCAL.drop_all(names)


# Databases of the local server to drop when the run ends (tests/conftest.py): every DROP
# DATABASE waits for a checkpoint of the whole server (one to nine seconds on a busy shared
# server), and drops asked for together share one.
_LATER: list[str] = []


def drop_later(name: str) -> None:
    """Drop this local database when the run ends, together with the others."""
    _LATER.append(name)


def drop_the_rest() -> None:
    names = list(dict.fromkeys(_LATER))
    _LATER.clear()
    drop_all(names)


def databases_like(pattern: str) -> list[str]:
    return LOCAL.databases_like(pattern)


def query(database: str, statement: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    return LOCAL.query(database, statement, params)


def execute(database: str, statement: str, params: tuple[object, ...] | None = None) -> None:
    LOCAL.execute(database, statement, params)


def end_own_session(url: str, pid: int) -> None:
    """End one session that this test opened itself (a pooled connection of its own engine),
    as a server restart would end it for that connection alone. A test never ends a connection
    it did not open: this machine's server may serve others."""
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SELECT pg_terminate_backend(%s)", (pid,))


class HeldCloneSlots:
    """Holds every clone slot of a deployment (by its broker URL) on the server, so its creates
    wait (deterministically) until release."""

    def __init__(self, slots: int, rabbitmq_url: str, server: str = SERVER) -> None:
        from services.provisioner.membership import deployment_of
        from services.rules.marker import lock_key

        self._conn = psycopg.connect(server, autocommit=True)
        deployment = deployment_of(rabbitmq_url)
        for slot in range(slots):
            key = lock_key("clone-slot", deployment, slot)
            self._conn.execute("SELECT pg_advisory_lock(%s)", (key,))

    def release(self) -> None:
        self._conn.close()

    def __enter__(self) -> HeldCloneSlots:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
