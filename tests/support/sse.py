"""A Server-Sent Events client for the tests: reads a stream in a thread of its own, so a test
can act while it listens, and keeps every event (and when it arrived)."""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Event:
    event: str
    id: int | None
    data: Any
    arrived: float = field(default_factory=time.time)


class EventStream:
    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        last_event_id: int | str | None = None,
    ) -> None:
        self.headers = dict(headers)
        if last_event_id is not None:
            self.headers["Last-Event-ID"] = str(last_event_id)
        self.url = url
        self.events: queue.Queue[Event | None] = queue.Queue()
        self.seen: list[Event] = []
        self.status: int | None = None
        self.content_type: str | None = None
        self.comments = 0
        self.problem: Any = None  # the problem document of a refused stream
        self.ended = threading.Event()
        self._opened = threading.Event()
        self._response: httpx.Response | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self._opened.wait(10):
            raise TimeoutError(f"no answer from {url}")

    def _read(self) -> None:
        try:
            with self._client.stream("GET", self.url, headers=self.headers) as response:
                self._response = response
                self.status = response.status_code
                self.content_type = response.headers.get("content-type")
                if response.status_code != 200:
                    response.read()
                    self.problem = response.json()
                    return
                self._opened.set()
                block: list[str] = []
                for line in response.iter_lines():
                    if line:
                        block.append(line)
                        continue
                    self._dispatch(block)
                    block = []
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by the test, or by the server
        finally:
            self._opened.set()
            self.ended.set()
            self.events.put(None)

    def _dispatch(self, block: list[str]) -> None:
        name, event_id, data = "message", None, []
        for line in block:
            if line.startswith(":"):
                self.comments += 1
                continue
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                name = value
            elif key == "id":
                event_id = int(value)
            elif key == "data":
                data.append(value)
        if data:
            self.events.put(Event(name, event_id, json.loads("\n".join(data))))

    def next(self, timeout: float = 10) -> Event | None:
        """The next event (None once the stream has ended); TimeoutError if none comes."""
        try:
            got = self.events.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no event within {timeout}s; saw {len(self.seen)}") from None
        if got is not None:
            self.seen.append(got)
        else:
            self.events.put(None)  # stays ended
        return got

    def until(self, wanted: Callable[[Event], bool], timeout: float = 30) -> Event:
        """The first event, seen already or to come, that is wanted."""
        for event in self.seen:
            if wanted(event):
                return event
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the awaited event did not come; saw {self._told()}")
            try:
                got = self.next(remaining)
            except TimeoutError:
                raise TimeoutError(f"the awaited event did not come; saw {self._told()}") from None
            if got is None:
                raise AssertionError(f"the stream ended first; saw {self._told()}")
            if wanted(got):
                return got

    def _told(self) -> list[tuple[str, int | None, object]]:
        return [(e.event, e.id, e.data.get("status")) for e in self.seen[-12:]]

    def close(self) -> None:
        """Hang up (the reading thread is woken by shutting its socket down)."""
        stream = self._response.extensions.get("network_stream") if self._response else None
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._client.close()
        self._thread.join(5)

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
