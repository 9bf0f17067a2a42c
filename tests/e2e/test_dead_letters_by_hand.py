"""Dead letters handled by hand, on the real broker: a failed job names the id its command is
listed by (also for a message sent without one); an unreadable dead letter is explained in the
listing, refused for requeue with a reason, and discarded, from the command line, over HTTP and
in the dashboard."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import expect

from services.runtime.topology import REQUESTS_EXCHANGE
from tests.conftest import unique_name
from tests.support import pg, rabbit
from tests.support.browser import launched, opened, register, shot, sign_in
from tests.support.flows import pending_create
from tests.support.polling import wait_for_instance
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def _publish(stack: Stack, body: bytes, routing_key: str, message_id: str | None) -> None:
    """Through the management API: aio-pika (aiormq) gives every message an id of its own, and
    these tests need messages sent without one too, as other clients may send them."""
    properties: dict[str, Any] = {
        "headers": {"type": "edfi.instances.InstanceRequested.v9"},
        "content_type": "application/json",
        "delivery_mode": 2,
    }
    if message_id is not None:
        properties["message_id"] = message_id
    r = httpx.post(
        f"{rabbit.MANAGEMENT}/exchanges/{quote(stack.vhost, safe='')}/{REQUESTS_EXCHANGE}/publish",
        auth=rabbit.AUTH,
        json={
            "properties": properties,
            "routing_key": routing_key,
            "payload": base64.b64encode(body).decode(),
            "payload_encoding": "base64",
        },
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["routed"], r.text


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return stack.cli("dead-letters", *args)


def _listed(api: httpx.Client, match: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = api.get("/v2/deadLetters", params={"queue": "provisioner.dead"})
        assert r.status_code == 200, r.text
        found = [letter for letter in r.json() if match(letter)]
        if found:
            letter: dict[str, Any] = found[0]
            return letter
        time.sleep(0.3)
    raise TimeoutError("the message was not dead-lettered")


def _ids(api: httpx.Client) -> set[str]:
    r = api.get("/v2/deadLetters", params={"queue": "provisioner.dead"})
    return {letter["messageId"] for letter in r.json()}


def test_a_failed_job_names_the_id_its_dead_command_is_requeued_by(
    stack: Stack, api: httpx.Client, db_prefix: str
) -> None:
    """Sent without a message id (a contract version the provisioner does not know): the job's
    error gives the id the listing shows, and requeueing by it completes the instance."""
    command = pending_create(
        stack.env["EDFI_IM_ADMIN_DATABASE_URL"], db_prefix, unique_name("By hand")
    )
    instance_id = command.instance_id
    _publish(stack, command.model_dump_json().encode(), str(instance_id), message_id=None)
    failed, _ = wait_for_instance(api, instance_id, timeout=30)
    assert failed["status"] == "Error"
    letter = _listed(api, lambda x: x["jobId"] == str(command.job_id))
    dead_id = letter["messageId"]
    assert dead_id.startswith("sha256-")
    assert letter["unreadable"] is None
    assert f"`just dead-letters requeue {dead_id}`" in failed["error"]
    assert "<message id>" not in failed["error"]
    r = api.post(f"/v2/deadLetters/{dead_id}/requeue")
    assert r.status_code == 200, r.text
    done, _ = wait_for_instance(api, instance_id, timeout=60)
    assert done["status"] == "Completed" and pg.exists(done["databaseName"])


def test_an_unreadable_dead_letter_is_explained_refused_for_requeue_and_discarded(
    stack: Stack, api: httpx.Client
) -> None:
    message_id = str(uuid.uuid4())
    _publish(stack, b"\x00 not json {", "987654", message_id=message_id)
    letter = _listed(api, lambda x: x["messageId"] == message_id)
    assert letter["unreadable"] == "its body is not JSON"

    listed = _cli(stack, "list")
    assert listed.returncode == 0, listed.stderr
    [line] = [json.loads(s) for s in listed.stdout.splitlines()[:-1] if message_id in s]
    assert line["unreadable"] == "its body is not JSON"
    assert "unreadable (discard them)" in listed.stdout.splitlines()[-1]

    refused = _cli(stack, "requeue", message_id)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"refused: {message_id} cannot be requeued: its body is not JSON, so it would only be "
        f"dead-lettered again; discard it (`just dead-letters discard --queue provisioner.dead "
        f"{message_id}`)"
    ]
    r = api.post(f"/v2/deadLetters/{message_id}/requeue")
    assert r.status_code == 409
    assert "its body is not JSON" in r.json()["detail"]
    assert message_id in _ids(api)  # a refused requeue leaves it where it was

    discarded = _cli(stack, "discard", message_id)
    assert discarded.returncode == 0, discarded.stderr
    assert discarded.stdout.startswith(f"discarded {message_id} from provisioner.dead")
    assert "its body is not JSON" in discarded.stdout
    assert message_id not in _ids(api)
    again = _cli(stack, "discard", message_id)
    assert again.returncode == 1
    assert again.stderr.strip() == f"not found: no message {message_id} in provisioner.dead"


def test_a_dead_letter_that_is_not_its_contract_is_discarded_over_http(
    stack: Stack, api: httpx.Client
) -> None:
    body = json.dumps({"hello": "world", "nonce": uuid.uuid4().hex}).encode()
    _publish(stack, body, "987655", message_id=None)
    letter = _listed(api, lambda x: x["body"] == body.decode())
    dead_id = letter["messageId"]
    assert dead_id.startswith("sha256-")
    assert letter["unreadable"].startswith("it is not a valid InstanceRequested")
    r = api.post(f"/v2/deadLetters/{dead_id}/discard")
    assert r.status_code == 200, r.text
    assert r.json()["result"].startswith(f"discarded {dead_id} from provisioner.dead")
    assert dead_id not in _ids(api)
    assert api.post(f"/v2/deadLetters/{dead_id}/discard").status_code == 404


def test_the_dashboard_explains_an_unreadable_letter_and_discards_it(
    stack: Stack, api: httpx.Client
) -> None:
    message_id = str(uuid.uuid4())
    _publish(stack, b"<not json/>", "987656", message_id=message_id)
    _listed(api, lambda x: x["messageId"] == message_id)
    with launched() as browser, opened(browser) as page:
        sign_in(page, stack, register(stack))
        page.click("nav a[data-view=dead-letters]")
        row = page.locator(f"#dead-letters tr[data-id='{message_id}']")
        expect(row).to_contain_text("Unreadable: its body is not JSON; it can only be discarded.")
        expect(row.locator("button.requeue")).to_have_count(0)
        shot(page, "dead-letters-unreadable")
        page.once("dialog", lambda dialog: dialog.accept())
        row.locator("button.discard").click()
        expect(page.locator("#notice")).to_contain_text(f"Discard of {message_id}: done")
        expect(row).to_have_count(0)
    assert message_id not in _ids(api)
