"""Tenants apart in the events API and the dead letters: a stream carries its tenant's changes
only, a caller limited to one tenant cannot listen to another (404, as everywhere), and the
shared dead-letter queues show and requeue each tenant's letters to that tenant only.

A gateway of its own (no provisioner is needed: an accepted create is already a change) with two
tenants, each with its own admin database, on its own vhost.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import httpx
import pytest
from playwright.sync_api import expect

from services.runtime.topology import PROVISIONER_DEAD_QUEUE, REQUESTS_EXCHANGE
from tests.conftest import unique_name
from tests.support import pg, rabbit
from tests.support.browser import launched, opened, register, shot, sign_in
from tests.support.sse import EventStream
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

A, B = "uih-north", "uih-south"


@dataclass
class Gateway:
    stack: Stack
    headers: dict[str, dict[str, str]]  # tenant -> headers of a client limited to it

    def api(self, tenant: str) -> httpx.Client:
        return httpx.Client(base_url=self.stack.url, headers=self.headers[tenant], timeout=10)


@pytest.fixture(scope="module")
def gateway(
    run_id: str, settings_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    vhost = f"edfi_im_test_{run_id}_events_tenants"
    admin = {A: f"edfi_admin_test_{run_id}_ev_n", B: f"edfi_admin_test_{run_id}_ev_s"}
    rabbit.create_vhost(vhost)
    for name in admin.values():
        pg.edfi_admin(name)
    tenants = {
        t: {
            "admin_database_url": pg.database_url(admin[t]),
            "database_name_pattern": f"{t}_{{name}}",
        }
        for t in (A, B)
    }
    stack = Stack(
        env={
            **settings_env,
            "EDFI_IM_RABBITMQ_URL": rabbit.amqp_url(vhost),
            "EDFI_IM_TENANTS": json.dumps(tenants),
        },
        log_dir=Path(tmp_path_factory.mktemp("events_tenants")),
        vhost=vhost,
        shard_count=int(settings_env["EDFI_IM_SHARD_COUNT"]),
    )
    stack.start("gateway")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{stack.url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, stack.log("gateway").read_text()[-3000:]
            time.sleep(0.2)
        headers = {
            t: {"Authorization": f"Bearer {stack.new_token(tenants=t)}", "tenant": t}
            for t in (A, B)
        }
        yield Gateway(stack, headers)
    finally:
        stack.stop_all()
        rabbit.delete_vhost(vhost)
        for database in admin.values():
            pg.drop_later(database)


def test_a_stream_carries_its_own_tenants_changes_only(gateway: Gateway) -> None:
    url = f"{gateway.stack.url}/v2/events"
    with (
        EventStream(url, gateway.headers[A]) as north,
        EventStream(url, gateway.headers[B]) as south,
    ):
        assert (north.next() or pytest.fail("no ready")).event == "ready"
        assert (south.next() or pytest.fail("no ready")).event == "ready"
        with gateway.api(B) as api:
            theirs = api.post(
                "/v2/dbInstances",
                json={"name": unique_name("South"), "databaseTemplate": "Minimal"},
            ).json()
        with gateway.api(A) as api:
            ours = api.post(
                "/v2/dbInstances",
                json={"name": unique_name("North"), "databaseTemplate": "Minimal"},
            ).json()
        # Each tenant numbers its own instances: tell them apart by job id.
        north.until(lambda e: e.event == "job" and e.data["id"] == ours["jobId"])
        south.until(lambda e: e.event == "job" and e.data["id"] == theirs["jobId"])
        time.sleep(0.5)  # what else would come, comes now
        while not north.events.empty():
            north.next()
    seen_north = {e.data.get("id") for e in north.seen} | {
        e.data.get("jobId") for e in north.seen if e.event == "instance"
    }
    assert ours["jobId"] in seen_north
    assert theirs["jobId"] not in seen_north
    assert all(e.data.get("name") != theirs["name"] for e in north.seen)


def test_another_tenants_stream_is_not_found(gateway: Gateway) -> None:
    url = f"{gateway.stack.url}/v2/events"
    limited_to_a = {**gateway.headers[A], "tenant": B}
    with EventStream(url, limited_to_a) as refused:
        assert refused.status == 404
        assert refused.problem["errors"]["tenant"]
    no_header = {"Authorization": gateway.headers[A]["Authorization"]}
    with EventStream(url, no_header) as unnamed:
        assert unnamed.status == 400


def _dead_letter(gateway: Gateway, tenant: str) -> str:
    """A command of `tenant` as the broker dead-letters it (x-death), in provisioner.dead."""
    message_id = str(uuid.uuid4())
    body = {
        "job_id": str(uuid.uuid4()),
        "instance_id": 999_999,
        "tenant": tenant,
        "operation": "create",
        "database_name": "x",
        "database_template": "t",
    }

    async def publish() -> None:
        conn = await aio_pika.connect(gateway.stack.env["EDFI_IM_RABBITMQ_URL"])
        channel = await conn.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(
                json.dumps(body).encode(),
                message_id=message_id,
                headers={
                    "type": "edfi.instances.InstanceRequested.v9",
                    "x-death": [
                        {
                            "reason": "rejected",
                            "count": 1,
                            "queue": "provisioner.shard.0",
                            "exchange": REQUESTS_EXCHANGE,
                            "routing-keys": [f"{tenant}.999999"],
                            "time": datetime.now(UTC).replace(microsecond=0),
                        }
                    ],
                },
                content_type="application/json",
            ),
            routing_key=PROVISIONER_DEAD_QUEUE,
        )
        await conn.close()

    asyncio.run(publish())
    return message_id


def test_dead_letters_are_shown_and_requeued_to_their_own_tenant_only(gateway: Gateway) -> None:
    north, south = _dead_letter(gateway, A), _dead_letter(gateway, B)
    with gateway.api(A) as api:
        listed = api.get("/v2/deadLetters", params={"queue": PROVISIONER_DEAD_QUEUE})
        assert listed.status_code == 200, listed.text
        ids = {letter["messageId"] for letter in listed.json()}
        assert north in ids and south not in ids
        mine = next(letter for letter in listed.json() if letter["messageId"] == north)
        assert mine["tenant"] == A and mine["reason"] == "rejected as unreadable or invalid"
        assert mine["instanceId"] == 999_999 and mine["deadLetteredAt"]
        # Another tenant's letter cannot be requeued from here: it does not exist for A.
        refused = api.post(f"/v2/deadLetters/{south}/requeue")
        assert refused.status_code == 404
        # Its own: the same checks as the command (its job is not recorded: refused, kept).
        kept = api.post(f"/v2/deadLetters/{north}/requeue")
        assert kept.status_code == 409, kept.text
        assert "no longer exists" in kept.json()["detail"]
    with gateway.api(B) as api:
        ids = {letter["messageId"] for letter in api.get("/v2/deadLetters").json()}
        assert south in ids and north not in ids
    with gateway.api(A) as api:
        assert north in {letter["messageId"] for letter in api.get("/v2/deadLetters").json()}


def test_the_dashboards_tenant_switcher_shows_each_tenant_apart(gateway: Gateway) -> None:
    stack = gateway.stack
    with gateway.api(A) as api:
        north = api.post(
            "/v2/dbInstances", json={"name": unique_name("North"), "databaseTemplate": "Minimal"}
        ).json()
    with launched() as browser, opened(browser) as page:
        sign_in(page, stack, register(stack))  # a client of every tenant
        picker = page.locator("#tenant")
        expect(picker.locator("option")).to_have_text([A, B])
        expect(page.locator(f"#instances tr[data-name='{north['name']}']")).to_be_visible()
        picker.select_option(B)
        expect(page.locator("#live")).to_have_text("live")
        expect(page.locator(f"#instances tr[data-name='{north['name']}']")).to_have_count(0)
        # Live, on B's stream: B's new instance appears, A's does not.
        with gateway.api(B) as api:
            south = api.post(
                "/v2/dbInstances",
                json={"name": unique_name("South"), "databaseTemplate": "Minimal"},
            ).json()
        with gateway.api(A) as api:
            later = api.post(
                "/v2/dbInstances",
                json={"name": unique_name("North"), "databaseTemplate": "Minimal"},
            ).json()
        expect(page.locator(f"#instances tr[data-name='{south['name']}']")).to_be_visible()
        page.wait_for_timeout(500)
        expect(page.locator(f"#instances tr[data-name='{later['name']}']")).to_have_count(0)
        shot(page, "tenants")
