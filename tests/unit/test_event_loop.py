"""The consumer services (provisioner, status service, scheduler) run on uvloop, as the
gateway's uvicorn does: every message is a few socket round trips, and uvloop's cost less CPU
than asyncio's own loop (issue 18)."""

from __future__ import annotations

import asyncio

import uvloop

from services.cli.main import _run_loop


def test_a_consumer_service_runs_on_uvloop() -> None:
    seen: list[asyncio.AbstractEventLoop] = []

    async def service() -> None:
        seen.append(asyncio.get_running_loop())

    _run_loop(service())

    assert len(seen) == 1 and isinstance(seen[0], uvloop.Loop), seen
