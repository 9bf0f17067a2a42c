"""The operators' dashboard in a real browser (Debian's Chromium, driven by Playwright): sign in,
create an instance and watch its progress bar move and finish without a reload, see the API's
validation messages, pause and resume a schedule, requeue a dead letter, and be refused with a
read-only client (which sees no action buttons). Screenshots of the pages are kept under
test-artifacts/screenshots/ for people to look at."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from services.runtime.settings import Settings
from services.runtime.topology import REQUESTS_EXCHANGE
from tests.conftest import unique_name
from tests.support import pg
from tests.support.browser import READ_ONLY, SHOTS, launched, opened, register, shot, sign_in
from tests.support.flows import create, pending_create
from tests.support.polling import wait_for_instance
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with opened(browser) as page:
        yield page


def progress_of(page: Page, name: str) -> tuple[str, int | None]:
    """The instance's status badge and its progress bar's value, as the page shows them."""
    found = page.evaluate(
        """name => {
            const row = [...document.querySelectorAll('#instances tbody tr')]
                .find(r => r.dataset.name === name);
            if (!row) return null;
            const bar = row.querySelector('progress');
            return [row.querySelector('.badge').textContent, bar ? Number(bar.value) : null];
        }""",
        name,
    )
    return (found[0], found[1]) if found else ("", None)


def test_sign_in_create_and_watch_the_progress_bar_finish_without_a_reload(
    page: Page, stack: Stack, settings: Settings, api: httpx.Client
) -> None:
    sign_in(page, stack, register(stack))
    page.evaluate("window.notReloaded = true")
    name = unique_name("Dashboard")
    seen: list[tuple[str, int | None]] = []
    # Every clone slot held: the create visibly waits for one (a step reported at 20%).
    with pg.HeldCloneSlots(settings.clone_concurrency, stack.env["EDFI_IM_RABBITMQ_URL"]):
        page.fill("#create input[name=name]", name)
        page.click("#create button[type=submit]")
        row = page.locator(f"#instances tbody tr[data-name='{name}']")
        expect(row.locator("progress")).to_have_attribute("value", "20", timeout=15_000)
        expect(row.locator(".progress-text")).to_contain_text("Waiting for a clone slot")
        seen.append(progress_of(page, name))
        shot(page, "instances-in-progress")
    deadline = time.monotonic() + 30
    while seen[-1] != ("Completed", 100):
        assert time.monotonic() < deadline, seen
        now = progress_of(page, name)
        if now != seen[-1]:
            seen.append(now)
        time.sleep(0.05)
    assert page.evaluate("window.notReloaded") is True, "the page was reloaded"
    percents = [p for _, p in seen if p is not None]
    assert percents[0] == 20 and percents[-1] == 100 and percents == sorted(percents), seen
    shot(page, "instances")
    instance = next(i for i in api.get("/v2/dbInstances?limit=500").json() if i["name"] == name)
    assert instance["status"] == "Completed" and pg.exists(instance["databaseName"])

    # The job's page: its steps with their times, the clone-slot wait among them.
    page.goto(f"{stack.url}/dashboard#/jobs/{instance['jobId']}")
    steps = page.locator("#steps tbody")
    expect(steps).to_contain_text("Waiting for a clone slot")
    expect(steps).to_contain_text("Completed")
    expect(page.locator("#job dl")).to_contain_text("provisioner")
    shot(page, "job")


def test_the_create_form_shows_the_apis_validation_messages(
    page: Page, stack: Stack, api: httpx.Client
) -> None:
    sign_in(page, stack, register(stack))
    page.fill("#create input[name=name]", "Not/allowed")
    page.click("#create button[type=submit]")
    said = api.post("/v2/dbInstances", json={"name": "Not/allowed", "databaseTemplate": "Minimal"})
    assert said.status_code == 422
    expect(page.locator("#create .field-error[data-field=name]")).to_have_text(
        said.json()["errors"]["name"][0]
    )


def _schedule(api: httpx.Client) -> dict[str, object]:
    r = api.post(
        "/v2/schedules",
        json={
            "name": f"Dashboard {uuid.uuid4().hex[:8]}",
            "job": {"type": "reconcile", "parameters": {"repair": False}},
            "trigger": {"type": "cron", "cron": "0 0 3 1 1 ?", "timeZone": "UTC"},
        },
    )
    assert r.status_code == 201, r.text
    created: dict[str, object] = r.json()
    return created


def test_pause_and_resume_a_schedule(page: Page, stack: Stack, api: httpx.Client) -> None:
    schedule = _schedule(api)
    sign_in(page, stack, register(stack))
    page.click("nav a[data-view=schedules]")
    row = page.locator(f"#schedules tr[data-id='{schedule['id']}']")
    expect(row.locator(".state")).to_have_text("Normal")
    row.locator("button.pause").click()
    expect(row.locator(".state")).to_have_text("Paused")
    assert api.get(f"/v2/schedules/{schedule['id']}").json()["state"] == "Paused"
    shot(page, "schedules")
    row.locator("button.resume").click()
    expect(row.locator(".state")).to_have_text("Normal")
    assert api.get(f"/v2/schedules/{schedule['id']}").json()["state"] == "Normal"
    row.locator("td").first.click()
    expect(page.locator("#runs")).to_be_visible()


def _poisoned_create(stack: Stack, db_prefix: str) -> tuple[int, str]:
    """An accepted create whose command reaches the provisioner in a contract version it does
    not know: dead-lettered, its job failed. Returns the instance id and the message id."""
    command = pending_create(
        stack.env["EDFI_IM_ADMIN_DATABASE_URL"], db_prefix, unique_name("Poisoned")
    )
    instance_id = command.instance_id
    message_id = str(uuid.uuid4())

    async def publish() -> None:
        conn = await aio_pika.connect(stack.env["EDFI_IM_RABBITMQ_URL"])
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(REQUESTS_EXCHANGE)
        await exchange.publish(
            aio_pika.Message(
                command.model_dump_json().encode(),
                message_id=message_id,
                headers={"type": "edfi.instances.InstanceRequested.v9"},
                content_type="application/json",
            ),
            routing_key=str(instance_id),
        )
        await conn.close()

    # Playwright's own event loop runs in this thread: the broker is reached from another.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, publish()).result(timeout=30)
    return instance_id, message_id


def test_requeue_a_dead_letter(page: Page, stack: Stack, api: httpx.Client, db_prefix: str) -> None:
    instance_id, message_id = _poisoned_create(stack, db_prefix)
    failed, _ = wait_for_instance(api, instance_id, timeout=30)
    assert failed["status"] == "Error" and "dead-lettered" in failed["error"]
    sign_in(page, stack, register(stack))
    page.click("nav a[data-view=dead-letters]")
    row = page.locator(f"#dead-letters tr[data-id='{message_id}']")
    expect(row).to_contain_text("rejected as unreadable or invalid")
    expect(row).to_contain_text(str(instance_id))
    shot(page, "dead-letters")
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button.requeue").click()
    expect(page.locator("#notice")).to_contain_text(f"Requeue of {message_id}: done")
    expect(row).to_have_count(0)
    completed, _ = wait_for_instance(api, instance_id, timeout=60)
    assert completed["status"] == "Completed" and pg.exists(completed["databaseName"])


def test_a_read_only_client_sees_no_actions_and_the_api_refuses_them(
    page: Page, stack: Stack, api: httpx.Client
) -> None:
    _schedule(api)
    sign_in(page, stack, register(stack, scopes=READ_ONLY))
    expect(page.locator("#who")).to_contain_text("read only")
    expect(page.locator("#instances tbody tr").first).to_be_visible()
    assert page.locator("#create").count() == 0
    assert page.locator("#instances button").count() == 0
    page.click("nav a[data-view=schedules]")
    expect(page.locator("#schedules tbody tr").first).to_be_visible()
    assert page.locator("#schedules button").count() == 0
    page.click("nav a[data-view=dead-letters]")
    expect(page.locator("#dead-letters")).to_be_visible()
    assert page.locator("#view button").count() == 0
    # Sent anyway, with the page's own token: the API refuses it.
    status = page.evaluate(
        """() => dashboard.act('Create', 'POST', '/v2/dbInstances',
                              {name: 'Sneaky', databaseTemplate: 'Minimal'})
                    .then(() => 200, err => err.status)"""
    )
    assert status == 403
    expect(page.locator("#notice")).to_contain_text("Create refused (403)")
    shot(page, "read-only")


def test_rename_and_delete_an_instance_with_the_apis_messages(
    page: Page, stack: Stack, api: httpx.Client
) -> None:
    done, _ = wait_for_instance(api, create(api, unique_name("Renamed"))["id"])
    sign_in(page, stack, register(stack))
    row = page.locator(f"#instances tbody tr[data-id='{done['id']}']")
    row.locator("button.rename").click()
    form = row.locator("form.rename-form")
    form.locator("input[name=name]").fill("Not/allowed")
    form.locator("button[type=submit]").click()
    said = api.put(f"/v2/dbInstances/{done['id']}", json={"name": "Not/allowed"})
    assert said.status_code == 422
    expect(form.locator(".field-error[data-field=name]")).to_have_text(
        said.json()["errors"]["name"][0]
    )
    new_name = unique_name("Renamed")
    form.locator("input[name=name]").fill(new_name)
    form.locator("button[type=submit]").click()
    expect(row.locator(".badge")).to_have_text("Completed", timeout=30_000)
    expect(row.locator(".name")).to_have_text(new_name)
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button.delete").click()
    expect(row.locator(".badge")).to_have_text("Deleted", timeout=30_000)
    gone = api.get(f"/v2/dbInstances/{done['id']}").json()
    assert gone["status"] == "Deleted" and not pg.exists(gone["databaseName"])


def test_the_jobs_filters_and_the_latest_reconcile_report(
    page: Page, stack: Stack, api: httpx.Client
) -> None:
    fired = api.post(
        "/v2/schedules",
        json={
            "name": f"Dashboard reconcile {uuid.uuid4().hex[:8]}",
            "job": {"type": "reconcile", "parameters": {"repair": False}},
            "trigger": {"type": "once", "runAt": datetime.now(UTC).isoformat()},
        },
    ).json()
    deadline = time.monotonic() + 30
    while (
        not (runs := api.get("/v2/jobs", params={"scheduleId": fired["id"]}).json())
        or runs[0]["status"] != "Completed"
    ):
        assert time.monotonic() < deadline, runs
        time.sleep(0.2)
    report = runs[0]
    sign_in(page, stack, register(stack))
    page.click("nav a[data-view=jobs]")
    expect(page.locator("#jobs tbody tr").first).to_be_visible()
    page.select_option("select[name=type]", "createInstance")
    expect(page.locator("#jobs tbody tr", has_not_text="createInstance")).to_have_count(0)
    types = page.locator("#jobs tbody td:nth-child(2)").all_inner_texts()
    assert types and set(types) == {"createInstance"}
    shot(page, "jobs")
    page.click("nav a[data-view=reconcile]")
    summary = page.locator("#reconcile-summary")
    expect(summary).to_contain_text(f"{report['result']['drift']} difference(s)")
    expect(summary.locator("a")).to_have_attribute("href", f"#/jobs/{report['id']}")
    shot(page, "reconcile")


def test_screenshots_are_kept(stack: Stack) -> None:
    kept = {p.name for p in Path(SHOTS).glob("*.png")}
    assert {"instances.png", "job.png", "schedules.png", "dead-letters.png"} <= kept
