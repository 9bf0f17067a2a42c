"""Dead letters over HTTP at the gateway's door: readers take turns (reading a queue takes its
messages for a moment), under a lock in the top-level admin database that another reader (the
command line, another gateway) holds. The lock is made per engine (an advisory lock on
PostgreSQL, an application lock on SQL Server): the in-process gateway's statements all pass
the run's SQL Server compile check (tests/support/mssql_compile.py), which the PostgreSQL-only
`pg_advisory_lock` it took before did not."""

from __future__ import annotations

import threading
import time

import httpx
import psycopg
import pytest

from services.admin_db.dead_letters import BROWSE_LOCK_KEY
from tests.support import pg
from tests.support.inprocess import InProcessGateway

pytestmark = pytest.mark.contract


def test_a_reader_waits_for_the_one_reading_then_reads(
    gateway: InProcessGateway, api: httpx.Client
) -> None:
    answers: list[httpx.Response] = []
    with psycopg.connect(pg.database_url(gateway.admin_database), autocommit=True) as reader:
        reader.execute("SELECT pg_advisory_lock(%s)", (BROWSE_LOCK_KEY,))
        waiting = threading.Thread(target=lambda: answers.append(api.get("/v2/deadLetters")))
        waiting.start()
        time.sleep(1)
        assert not answers, "read while another reader held the queue"
        reader.execute("SELECT pg_advisory_unlock(%s)", (BROWSE_LOCK_KEY,))
        waiting.join(30)
    [answer] = answers
    assert answer.status_code == 200, answer.text
    assert answer.json() == []
    # The lock is the request's only while it reads: another reader takes it at once.
    with psycopg.connect(pg.database_url(gateway.admin_database), autocommit=True) as after:
        assert after.execute("SELECT pg_try_advisory_lock(%s)", (BROWSE_LOCK_KEY,)).fetchone() == (
            True,
        )
