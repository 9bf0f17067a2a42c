"""A gateway's change feed (services/gateway/feed.py) reads the admin database's changes only
while a stream follows it; a stream that starts later still gets every change after its cursor,
in order, and one that follows gets each new change as it commits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from sqlalchemy import text

from services.admin_db import changes
from services.admin_db.engine import create_admin_engine
from services.gateway.feed import ChangeFeed
from services.runtime.settings import Settings
from tests.support import pg
from tests.support.statements import pinged_checkouts, sent_statements

pytestmark = pytest.mark.integration


def _job_changes(admin_database: str, job_id: uuid.UUID, count: int) -> None:
    """A maintenance job and `count` updates of it: 1 + count committed changes."""
    with psycopg.connect(pg.database_url(admin_database), autocommit=True) as c:
        c.execute(
            "INSERT INTO edfi_im.jobs (id, type, status, data, attempts, created_at, recoveries) "
            "VALUES (%s, 'prune', 'Running', '{}', 0, now(), 0)",
            (job_id,),
        )
        for k in range(count):
            c.execute(
                "UPDATE edfi_im.jobs SET progress_message = %s WHERE id = %s",
                (f"step {k}", job_id),
            )


def _newest(admin_database: str) -> int:
    rows = pg.query(admin_database, "SELECT coalesce(max(id), 0) FROM edfi_im.changes")
    return int(rows[0][0])


@pytest.fixture
async def feed(admin_database: str, settings: Settings) -> AsyncIterator[ChangeFeed]:
    engine = create_admin_engine(pg.database_url(admin_database), pool_size=2)
    # No poll during a test (a poll reads): what is read, a NOTIFY made it read.
    quiet = settings.model_copy(update={"events_poll_interval_seconds": 60.0})
    fed = ChangeFeed(engine, pg.database_url(admin_database), quiet)
    await fed.start()
    yield fed
    await fed.stop()
    await engine.dispose()


async def test_with_no_stream_following_the_feed_reads_nothing_and_a_late_one_misses_nothing(
    feed: ChangeFeed, admin_database: str
) -> None:
    before = feed.latest
    job_id = uuid.uuid4()
    await asyncio.to_thread(_job_changes, admin_database, job_id, 3)
    newest = _newest(admin_database)
    assert newest >= before + 4
    # Each commit NOTIFYs; with nobody following, the feed does not read them.
    await asyncio.sleep(1.0)
    assert feed.latest == before
    async with feed.following():
        # Entered, the feed is current.
        assert feed.latest >= newest
        # A stream at the old cursor reads what it missed, in commit order.
        missed = [c for c in await feed.read(before, 100) if c.entity_id == str(job_id)]
        assert [c.body.get("progress_message") for c in missed] == [
            None,
            "step 0",
            "step 1",
            "step 2",
        ]
        ids = [c.id for c in missed]
        assert ids == sorted(ids)


async def test_a_following_stream_gets_each_change_as_it_commits(
    feed: ChangeFeed, admin_database: str
) -> None:
    async with feed.following():
        cursor = feed.latest
        job_id = uuid.uuid4()
        await asyncio.to_thread(_job_changes, admin_database, job_id, 1)
        seen: list[str | None] = []
        while len(seen) < 2:
            assert await feed.wait(cursor, 10), "a committed change never reached the feed"
            for change in await feed.read(cursor, 100):
                cursor = change.id
                if change.entity_id == str(job_id):
                    seen.append(change.body.get("progress_message"))
        assert seen == [None, "step 0"]
    # Nobody follows any more: later changes are not read.
    latest = feed.latest
    await asyncio.to_thread(_job_changes, admin_database, uuid.uuid4(), 1)
    await asyncio.sleep(1.0)
    assert feed.latest == latest


async def test_the_feed_reads_a_change_in_one_statement_without_the_ping_even_after_a_restart(
    feed: ChangeFeed, admin_database: str
) -> None:
    """Issue 18: a change its NOTIFY does not carry as the next one (here a gap: a number drawn
    and never committed) reaches the streams through this read: one SELECT in autocommit, its
    connection not pinged first. A pooled connection the server ended meanwhile (a restart)
    costs a new connection, not the change."""
    engine = feed.engine
    async with feed.following():
        # A first change read (the feed prunes old changes at its first wake, then once a
        # minute: not what is measured here).
        cursor = feed.latest
        await asyncio.to_thread(_job_changes, admin_database, uuid.uuid4(), 0)
        assert await feed.wait(cursor, 10)
        async with engine.connect() as conn:
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
        pg.end_own_session(pg.database_url(admin_database), pid)
        cursor = feed.latest
        job_id = uuid.uuid4()
        await asyncio.to_thread(
            pg.execute, admin_database, "SELECT nextval('edfi_im.changes_id_seq')"
        )
        with pinged_checkouts(engine) as pinged, sent_statements(engine, transactions=True) as sent:
            await asyncio.to_thread(_job_changes, admin_database, job_id, 0)
            assert await feed.wait(cursor, 10), "a committed change never reached the feed"
        assert [c.entity_id for c in await feed.read(cursor, 100)] == [str(job_id)]
    assert sent and all(s.lstrip().startswith("SELECT") for s in sent), sent
    assert "BEGIN" not in sent
    assert pinged and not any(pinged), pinged


async def test_a_jobs_stream_starts_from_one_statement_without_the_ping(
    admin_database: str,
) -> None:
    """Issue 18: a job's stream starts from its row and the newest change number, read in one
    statement (one snapshot: every change after the number is newer than the row) in
    autocommit, without the pre-ping. A job that does not exist still gives the number."""
    engine = create_admin_engine(pg.database_url(admin_database), pool_size=1)
    job_id = uuid.uuid4()
    await asyncio.to_thread(_job_changes, admin_database, job_id, 2)
    try:
        with pinged_checkouts(engine) as pinged, sent_statements(engine, transactions=True) as sent:
            row, cursor = await changes.job_with_cursor(engine, job_id)
            missing, same = await changes.job_with_cursor(engine, uuid.uuid4())
    finally:
        await engine.dispose()
    assert row is not None and row.id == job_id and row.progress_message == "step 1"
    assert cursor == same == _newest(admin_database)
    assert missing is None
    assert len(sent) == 2 and "BEGIN" not in sent, sent
    assert pinged and not any(pinged), pinged


async def _followed_to_now(feed: ChangeFeed, admin_database: str) -> int:
    """A first change read while following (the feed prunes at its first wake: not what these
    tests measure); the feed's cursor after it."""
    cursor = feed.latest
    await asyncio.to_thread(_job_changes, admin_database, uuid.uuid4(), 0)
    assert await feed.wait(cursor, 10), "a committed change never reached the feed"
    await asyncio.sleep(0.2)  # its NOTIFY, if the read came first, has come too
    return feed.latest


async def _arrived(feed: ChangeFeed, cursor: int, count: int) -> list[changes.Change]:
    found: list[changes.Change] = []
    while len(found) < count:
        assert await feed.wait(cursor, 10), "a committed change never reached the feed"
        batch = await feed.read(cursor, 100)
        found += batch
        cursor = batch[-1].id
    return found


async def test_a_change_carried_by_its_notify_reaches_the_streams_without_a_read(
    feed: ChangeFeed, admin_database: str
) -> None:
    """Issue 18: the NOTIFY carries its change (0014_change_notify.sql); the next one in order
    goes to the streams without a statement. Two changes of one transaction, both carried, in
    their order; the same as the table holds."""
    a, b = uuid.uuid4(), uuid.uuid4()
    async with feed.following():
        cursor = await _followed_to_now(feed, admin_database)
        with sent_statements(feed.engine, transactions=True) as sent:

            def two_in_one() -> None:
                with psycopg.connect(pg.database_url(admin_database)) as c:
                    for job in (a, b):
                        c.execute(
                            "INSERT INTO edfi_im.jobs (id, type, status, data, attempts, "
                            "created_at, recoveries) "
                            "VALUES (%s, 'prune', 'Running', '{\"k\": 1}', 0, now(), 0)",
                            (job,),
                        )

            await asyncio.to_thread(two_in_one)
            got = await _arrived(feed, cursor, 2)
        async with feed.engine.connect() as conn:
            stored = await changes.after(conn, cursor, 100)
    assert sent == [], sent
    assert [c.entity_id for c in got] == [str(a), str(b)]
    assert got == stored
    assert got[0].body["data"] == {"k": 1} and got[0].body["status"] == "Running"


async def test_a_change_too_large_to_carry_is_announced_by_its_number_and_read(
    feed: ChangeFeed, admin_database: str
) -> None:
    """A change larger than a NOTIFY can carry (8000 bytes) commits all the same: its NOTIFY
    says its number alone, and the feed reads it, whole."""
    job = uuid.uuid4()
    long = "x" * 9000
    async with feed.following():
        cursor = await _followed_to_now(feed, admin_database)
        with sent_statements(feed.engine, transactions=True) as sent:
            await asyncio.to_thread(
                pg.execute,
                admin_database,
                "INSERT INTO edfi_im.jobs (id, type, status, data, attempts, created_at, "
                "recoveries, progress_message) VALUES (%s, 'prune', 'Running', '{}', 0, now(), "
                "0, %s)",
                (job, long),
            )
            got = await _arrived(feed, cursor, 1)
    assert [c.entity_id for c in got] == [str(job)]
    assert got[0].body["progress_message"] == long
    assert any("edfi_im.changes" in s for s in sent), sent


async def test_a_gap_in_the_numbers_is_read_and_nothing_is_missed_or_seen_twice(
    feed: ChangeFeed, admin_database: str
) -> None:
    """A number taken and never committed (a transaction rolled back after drawing it) leaves
    a gap: the change after it is not the next one the feed knows, so it is read, not taken from
    its NOTIFY; the streams see each change once, in order."""
    job = uuid.uuid4()
    async with feed.following():
        cursor = await _followed_to_now(feed, admin_database)
        await asyncio.to_thread(
            pg.execute, admin_database, "SELECT nextval('edfi_im.changes_id_seq')"
        )
        with sent_statements(feed.engine, transactions=True) as sent:
            await asyncio.to_thread(_job_changes, admin_database, job, 2)
            got = await _arrived(feed, cursor, 3)
            await asyncio.sleep(0.3)  # the NOTIFYs of changes already read change nothing
            again = await feed.read(cursor, 100)
    assert [c.body.get("progress_message") for c in got] == [None, "step 0", "step 1"]
    assert got[0].id == cursor + 2
    assert again == got
    assert any("edfi_im.changes" in s for s in sent), sent
