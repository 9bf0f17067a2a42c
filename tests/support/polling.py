from __future__ import annotations

import time
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
