"""Level 2 of SQL Server's verification: every statement the services send to the admin
database during a test run is compiled for SQL Server's dialect as well, and must compile to
T-SQL with nothing of PostgreSQL's left in it. Statements that admin_db/dialect.py makes per
engine on purpose (execution option `engine_specific`) are golden-tested there instead."""

from __future__ import annotations

import datetime
import re
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import greenlet
from sqlalchemy import event
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import Engine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.elements import BindParameter, TextClause
from sqlalchemy.sql.selectable import Select
from sqlalchemy.sql.visitors import iterate

DIALECT = mssql.dialect()  # type: ignore[no-untyped-call]
# What T-SQL does not have (or what means something else there).
POSTGRES_ONLY = [
    (re.compile(r"\bpg_\w+\s*\("), "a PostgreSQL function"),
    (re.compile(r"ON CONFLICT", re.I), "ON CONFLICT"),
    (re.compile(r"::"), "a :: cast"),
    (re.compile(r"\bILIKE\b", re.I), "ILIKE"),
    (re.compile(r"\bnow\(\)"), "now()"),
    (re.compile(r"\bmake_interval\b"), "make_interval"),
    (re.compile(r"\bRETURNING\b"), "RETURNING"),
    (re.compile(r"FOR UPDATE|SKIP LOCKED"), "FOR UPDATE"),
    (re.compile(r"\bLIMIT\b"), "LIMIT"),
    (re.compile(r"\bINTERVAL\b", re.I), "INTERVAL"),
    (re.compile(r"->>?"), "a JSONB operator"),
]
SERVICES = "/services/"


@dataclass
class MssqlCompileCheck:
    """Collects, per distinct statement, whether it compiles for SQL Server."""

    compiled: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    skipped: int = 0

    def problems(self, statement: ClauseElement) -> list[str]:
        """Why `statement` would not run on SQL Server (empty: it would compile)."""
        found = []
        try:
            text = str(statement.compile(dialect=DIALECT))
        except Exception as exc:
            return [f"does not compile for mssql: {exc}"]
        found += [what for pattern, what in POSTGRES_ONLY if pattern.search(text)]
        if isinstance(statement, Select) and statement._for_update_arg is not None:
            hints = [h for (_, d), h in statement._hints.items() if d == "mssql"]
            if not any("UPDLOCK" in h for h in hints):
                found.append("FOR UPDATE without an UPDLOCK table hint for mssql")
        for element in iterate(statement):
            if isinstance(element, BindParameter) and isinstance(element.value, datetime.timedelta):
                found.append("a timedelta parameter (SQL Server has no interval)")
        return found

    def check(self, statement: Any, options: Any) -> None:
        if not isinstance(statement, ClauseElement) or isinstance(statement, TextClause):
            return
        own = getattr(statement, "_execution_options", {})
        if (options or {}).get("engine_specific") or own.get("engine_specific"):
            self.skipped += 1
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            key = str(statement.compile())
            if key in self.compiled or key in self.failures or not _from_services():
                return
            problems = self.problems(statement)
        if problems:
            self.failures[key] = "; ".join(problems)
        else:
            self.compiled[key] = ""

    def install(self) -> None:
        def before_execute(
            conn: Any, statement: Any, multiparams: Any, params: Any, options: Any
        ) -> None:
            self.check(statement, options)

        event.listen(Engine, "before_execute", before_execute)


def _from_services() -> bool:
    """Whether the statement is sent by the services' code (not a test's own query). With
    SQLAlchemy's asyncio extension the statement runs in a child greenlet: the awaiting code is
    on the parent greenlet's stack."""
    frames: list[Any] = [sys._getframe(2)]
    parent = greenlet.getcurrent().parent
    if parent is not None and parent.gr_frame is not None:
        frames.append(parent.gr_frame)
    for frame in frames:
        while frame is not None:
            name = frame.f_code.co_filename
            if SERVICES in name and "/site-packages/" not in name:
                return True
            frame = frame.f_back
    return False
