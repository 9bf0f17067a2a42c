"""Small HTTP flows the end-to-end tests share."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.polling import wait_for_instance


def create(api: httpx.Client, name: str, template: str = "Minimal") -> dict[str, Any]:
    r = api.post("/v2/dbInstances", json={"name": name, "databaseTemplate": template})
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


def create_completed(api: httpx.Client, name: str) -> dict[str, Any]:
    done, _ = wait_for_instance(api, create(api, name)["id"])
    assert done["status"] == "Completed", done
    return done


def rename(api: httpx.Client, instance_id: int, name: str) -> httpx.Response:
    return api.put(f"/v2/dbInstances/{instance_id}", json={"name": name})
