"""The admin database's engine-specific statements (services/admin_db/dialect.py), golden for
both engines, and the check that keeps PostgreSQL-only SQL out of everything else."""

from __future__ import annotations

import datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.dialects import mssql, postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.admin_db import dialect
from services.admin_db.tables import inbox, jobs, outbox
from tests.support.mssql_compile import MssqlCompileCheck

MSSQL = mssql.dialect()  # type: ignore[no-untyped-call]
PG = postgresql.dialect()  # type: ignore[no-untyped-call]


def _sql(statement: object, on: object) -> str:
    return " ".join(str(statement.compile(dialect=on)).split())  # type: ignore[attr-defined]


def test_transaction_locks_are_advisory_locks_or_application_locks() -> None:
    assert _sql(dialect.lock_statement("postgresql", 7, 9), PG).startswith(
        "SELECT pg_advisory_xact_lock("
    )
    assert _sql(dialect.lock_statement("mssql", 7, 9), MSSQL) == (
        "SET NOCOUNT ON; DECLARE @r int; EXEC @r = sp_getapplock @Resource = :resource, "
        "@LockMode = 'Exclusive', @LockOwner = 'Transaction', @LockTimeout = -1; SELECT @r"
    )
    assert "@LockTimeout = 0" in _sql(dialect.try_lock_statement("mssql", 7), MSSQL)
    # Two keys pack into one resource; different keys never share one.
    assert dialect._applock_resource(7, 9) != dialect._applock_resource(9, 7)


def test_inbox_insert_if_absent() -> None:
    values = {"consumer": "c", "message_id": "m", "message_type": "t", "processed_at": func.now()}
    key = ["consumer", "message_id"]
    assert _sql(dialect.insert_if_absent("mssql", inbox, values, key), MSSQL) == (
        "INSERT INTO edfi_im.inbox (consumer, message_id, message_type, processed_at) "
        "SELECT :param_1 AS consumer, :param_2 AS message_id, :param_3 AS message_type, "
        "SYSDATETIMEOFFSET() AS processed_at WHERE NOT (EXISTS (SELECT * FROM edfi_im.inbox "
        "WITH (UPDLOCK, HOLDLOCK) WHERE edfi_im.inbox.consumer = :consumer_1 AND "
        "edfi_im.inbox.message_id = :message_id_1))"
    )
    assert "ON CONFLICT DO NOTHING" in _sql(
        dialect.insert_if_absent("postgresql", inbox, values, key), PG
    )


def test_time_and_row_locks() -> None:
    query = dialect.locked(
        select(jobs.c.id).where(jobs.c.created_at < dialect.ago(90)).order_by(jobs.c.id).limit(5),
        jobs,
        skip_locked=True,
    )
    assert _sql(query, MSSQL) == (
        "SELECT TOP __[POSTCOMPILE_param_1] edfi_im.jobs.id FROM edfi_im.jobs WITH (UPDLOCK, "
        "ROWLOCK, READPAST) WHERE edfi_im.jobs.created_at < DATEADD(second, -CAST(:param_2 AS "
        "int), SYSDATETIMEOFFSET()) ORDER BY edfi_im.jobs.id"
    )
    pg = _sql(query, PG)
    assert "(now() - make_interval(secs => %(param_1)s))" in pg
    assert pg.endswith("FOR UPDATE SKIP LOCKED")
    assert "WITH (UPDLOCK" not in pg


def test_json_columns_are_jsonb_or_nvarchar_max() -> None:
    from sqlalchemy.schema import CreateTable

    assert "body JSONB NOT NULL" in _sql(CreateTable(outbox), PG)
    assert "body NVARCHAR(max) NOT NULL" in _sql(CreateTable(outbox), MSSQL)


@pytest.mark.parametrize(
    ("statement", "why"),
    [
        (select(jobs).with_for_update(), "FOR UPDATE without an UPDLOCK"),
        (select(func.pg_advisory_xact_lock(1)), "a PostgreSQL function"),
        (pg_insert(inbox).values(consumer="c").on_conflict_do_nothing(), "does not compile"),
        (
            select(jobs.c.id).where(jobs.c.created_at < func.now() - datetime.timedelta(seconds=5)),
            "timedelta",
        ),
        (select(jobs.c.id).offset(5), "does not compile"),
    ],
)
def test_the_check_refuses_what_sql_server_cannot_run(statement: object, why: str) -> None:
    problems = MssqlCompileCheck().problems(statement)  # type: ignore[arg-type]
    assert any(why in p for p in problems), problems


def test_the_check_accepts_portable_statements() -> None:
    check = MssqlCompileCheck()
    assert check.problems(dialect.locked(select(jobs).where(jobs.c.id.is_(None)), jobs)) == []
    assert check.problems(select(outbox.c.body["job_id"].as_string())) == []
