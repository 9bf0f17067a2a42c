from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

TERMINAL = {"Completed", "Error", "Deleted", "Delete_Failed", "Rename_Failed"}


def wait_for_instance(
    api: httpx.Client, instance_id: int, timeout: float = 60, interval: float = 0.05
) -> tuple[dict[str, Any], list[str]]:
    """Poll until the instance reaches a terminal status; returns it and the statuses seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = api.get(f"/v2/dbInstances/{instance_id}").json()
        if not seen or seen[-1] != body["status"]:
            seen.append(body["status"])
        if body["status"] in TERMINAL:
            return body, seen
        time.sleep(interval)
    raise TimeoutError(f"instance {instance_id} still {seen[-1]} after {timeout}s; saw {seen}")


def until(check: Callable[[], Any], timeout: float = 30, interval: float = 0.1) -> Any:
    """The first truthy value `check` returns, asked every `interval` for up to `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"condition not met in {timeout}s")


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    """The problem document of an answer that must have this status."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    return body
