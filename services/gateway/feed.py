"""One tenant's change feed inside a gateway: it LISTENs on the tenant's admin database, reads
each committed change once, keeps the newest in a bounded buffer and wakes the streams waiting
for them. Every gateway replica runs its own, so a change reaches the streams of every replica.

A NOTIFY carries its change (0014_change_notify.sql): the next one in order goes to the streams
without being read back; a gap in the numbers, a change too large to carry or a read under way
falls back to reading, so nothing is missed or seen twice.

It reads only while a stream follows it: with none open, a NOTIFY only marks it behind (every
create, rename and delete NOTIFYs a few times, and nobody would read what it read). The first
stream to follow it again starts it from the newest change; a stream whose cursor is older
reads what it missed from the database, as a stream resuming from far back always has.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from services.admin_db import changes
from services.admin_db.changes import Change
from services.runtime.logging import get_logger
from services.runtime.settings import Settings

log = get_logger(__name__)

PAGE = 500
PRUNE_EVERY_SECONDS = 60.0


class ChangeFeed:
    def __init__(self, engine: AsyncEngine, url: str, settings: Settings) -> None:
        self._engine = engine
        self._url = url
        self._settings = settings
        self._buffer: deque[Change] = deque(maxlen=settings.events_buffer_size)
        self._floor = 0  # the buffer holds every change after this number, up to `latest`
        self.latest = 0
        self._arrived = asyncio.Event()
        self._wake = asyncio.Event()
        self.closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._followers = 0
        # Changes may have been committed that this feed has not read (no stream followed it).
        self._behind = False
        self._reading = asyncio.Lock()

    @property
    def floor(self) -> int:
        """Every change after this number is in memory."""
        return self._floor

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def start(self) -> None:
        async with self._engine.connect() as conn:
            self.latest = self._floor = await changes.latest(conn)
        self._task = asyncio.create_task(self._run(), name="change feed")

    def close(self) -> None:
        """Ends every stream of this feed (at shutdown: streams never end by themselves)."""
        self.closing.set()
        self._wake.set()
        self._announce()

    async def stop(self) -> None:
        self.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        listener: Any = None
        pruned = 0.0
        try:
            while not self.closing.is_set():
                if listener is None or listener.is_closed():
                    listener = await self._listen(listener)
                    self._wake.set()  # read what came while it was not listening
                poll = self._settings.events_poll_interval_seconds
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=poll)
                self._wake.clear()
                try:
                    if self._followers:
                        await self._catch_up()
                    else:
                        self._behind = True
                    if time.monotonic() - pruned > PRUNE_EVERY_SECONDS:
                        pruned = time.monotonic()
                        await changes.prune(self._engine, self._settings.events_retention_seconds)
                except Exception as exc:
                    log.warning("change feed: reading failed; retrying", error=repr(exc)[:300])
                    await asyncio.sleep(1)
        finally:
            if listener is not None:
                await changes.closed(listener)

    async def _listen(self, old: Any) -> Any:
        if old is not None:
            await changes.closed(old)
        try:
            return await changes.listen(self._url, self._notified)
        except Exception as exc:
            # Polling goes on meanwhile (events_poll_interval_seconds), so nothing is missed.
            log.warning("change feed: cannot LISTEN; polling", error=repr(exc)[:300])
            return None

    def _notified(self, payload: str) -> None:
        """A NOTIFY: the change it carries goes to the streams at once when it is the next one
        (numbers follow commit order, and so do NOTIFYs: nothing can be missing below it), no
        read is under way and a stream follows; anything else (a gap, a change too large to
        carry, a read running, nobody following) is read as before."""
        if not self._followers:
            self._wake.set()  # marks the feed behind: nothing to read or parse for anyone
            return
        said = changes.announced(payload)
        if said is not None and not self._behind:
            if said.id <= self.latest:
                return  # a read already brought it
            if (
                said.change is not None
                and said.id == self.latest + 1
                and not self._reading.locked()
            ):
                self._add([said.change])
                return
        self._wake.set()

    def _add(self, batch: list[Change]) -> None:
        """Newer changes, in order, into the buffer; the streams told."""
        for change in batch:
            if len(self._buffer) == self._buffer.maxlen:
                self._floor = self._buffer[0].id
            self._buffer.append(change)
        self.latest = batch[-1].id
        self._announce()

    @contextlib.asynccontextmanager
    async def following(self) -> AsyncIterator[None]:
        """Around a stream that reads this feed: the feed reads every change while at least one
        does. Entered, the feed is current (`latest` is the newest change committed)."""
        self._followers += 1
        try:
            await self._catch_up()
            yield
        finally:
            self._followers -= 1

    async def _catch_up(self) -> None:
        async with self._reading:
            if self._behind:
                await self._skip_to_newest()
            else:
                await self._read_new()

    async def _skip_to_newest(self) -> None:
        """After a time nobody followed the feed: start again from the newest change (not read
        what nobody was waiting for). The buffer starts empty there; a stream at an older
        cursor reads from the database (`read`)."""
        newest = await changes.latest_alone(self._engine)
        self._buffer.clear()
        self.latest = self._floor = max(self.latest, newest)
        self._behind = False
        self._announce()

    async def _read_new(self) -> None:
        # Each page one SELECT in autocommit (a snapshot of its own, as in a READ COMMITTED
        # transaction) without the pre-ping: every wake reads, on the way of every change to
        # the streams. A read that meets a connection the server ended is sent once more.
        while True:
            batch = await changes.after_alone(self._engine, self.latest, PAGE)
            if not batch:
                return
            self._add(batch)
            if len(batch) < PAGE:
                # All there was as of this read. A change committed after it NOTIFYs after
                # its commit, and so wakes the feed again (changes are numbered in commit
                # order: none can appear below `latest` later).
                return

    def _announce(self) -> None:
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()

    async def read(self, cursor: int, limit: int) -> list[Change]:
        """Up to `limit` changes after `cursor`, oldest first: from the buffer when it still
        holds them, else from the database (a stream resuming from far back)."""
        if cursor >= self._floor:
            newer = []
            for change in reversed(self._buffer):  # a live stream wants the last few
                if change.id <= cursor:
                    break
                newer.append(change)
            newer.reverse()
            return newer[:limit]
        async with self._engine.connect() as conn:
            found = await changes.after(conn, cursor, limit)
        return found

    async def wait(self, cursor: int, seconds: float) -> bool:
        """Until a change after `cursor` has arrived (True), the feed closes or time is up."""
        deadline = time.monotonic() + seconds
        while self.latest <= cursor and not self.closing.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout=remaining)
            except TimeoutError:
                return False
        return not self.closing.is_set()
