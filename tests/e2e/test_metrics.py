"""Metrics an operator can watch: each service's Prometheus endpoint counts what it did during a
create (the gateway's `/metrics`; the consumers' on their health port)."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import unique_name
from tests.support.flows import create_completed
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(url: str) -> Samples:
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of that name whose labels include these."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def _consumer(stack: Stack, name: str) -> Samples:
    return _scrape(f"http://127.0.0.1:{stack.health_ports[name]}/metrics")


def test_every_service_counts_a_create_from_request_to_outcome(
    stack: Stack, api: httpx.Client
) -> None:
    gateway_before = _scrape(f"{stack.url}/metrics")
    status_before = _consumer(stack, "status")
    provisioner_before = _consumer(stack, "provisioner")
    scheduler_before = _consumer(stack, "scheduler")

    create_completed(api, unique_name("Metrics"))

    gateway = _scrape(f"{stack.url}/metrics")
    status = _consumer(stack, "status")
    provisioner = _consumer(stack, "provisioner")
    scheduler = _consumer(stack, "scheduler")

    def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    # The gateway: the request by its route template, the job it accepted, the command relayed.
    posted = {"method": "POST", "route": "/v2/dbInstances", "status": "202"}
    assert (
        delta(gateway, gateway_before, "edfi_im_http_request_duration_seconds_count", **posted) == 1
    )
    polled = {"method": "GET", "route": "/v2/dbInstances/{instance_id}", "status": "200"}
    assert (
        delta(gateway, gateway_before, "edfi_im_http_request_duration_seconds_count", **polled) >= 1
    )
    assert (
        delta(
            gateway,
            gateway_before,
            "edfi_im_jobs_accepted_total",
            type="createInstance",
            source="api",
        )
        == 1
    )
    # Gateway, status and scheduler all relay the one outbox (one at a time): the command went
    # out through one of them.
    relayers = [(gateway, gateway_before), (status, status_before), (scheduler, scheduler_before)]
    relayed = sum(
        delta(after, before, "edfi_im_outbox_relay_delay_seconds_count")
        for after, before in relayers
    )
    assert relayed >= 1
    backlog = ("edfi_im_outbox_backlog", frozenset({("tenant", "default")}))
    assert any(backlog in after for after, _ in relayers)

    # The provisioner consumed the command from a shard.
    assert delta(provisioner, provisioner_before, "edfi_im_messages_consumed_total") >= 1

    # The status service applied the events (the outcome at least: a create that ends within
    # the progress delay reports neither its steps nor a Started) and counted the finished job
    # and its duration.
    assert (
        delta(status, status_before, "edfi_im_messages_consumed_total", queue="status.events") >= 1
    )
    finished = {"type": "createInstance", "outcome": "Completed"}
    assert delta(status, status_before, "edfi_im_jobs_finished_total", **finished) >= 1
    assert delta(status, status_before, "edfi_im_job_duration_seconds_count", **finished) >= 1
    assert _value(status, "edfi_im_job_duration_seconds_sum", **finished) > 0


def test_metrics_need_no_token_and_reveal_no_secret(stack: Stack) -> None:
    r = httpx.get(f"{stack.url}/metrics", timeout=10)
    assert r.status_code == 200
    text = r.text + _consumer_text(stack)
    for secret in (
        stack.env["ODS_CONNECTION_STRING_ENCRYPTION_KEY"],
        stack.env["EDFI_IM_JWT_SIGNING_KEY"],
        "guest:guest",
    ):
        assert secret not in text
    # Every consumer answers, with this system's metrics in it.
    for name in ("provisioner", "status", "scheduler"):
        assert "edfi_im_" in httpx.get(f"http://127.0.0.1:{stack.health_ports[name]}/metrics").text


def _consumer_text(stack: Stack) -> str:
    return "".join(
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        for port in stack.health_ports.values()
    )
