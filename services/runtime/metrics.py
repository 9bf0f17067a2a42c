"""Prometheus metrics (prometheus-client). The gateway serves them at `/metrics`; the consumer
services on their health port (`EDFI_IM_HEALTH_PORT`) at `/metrics`. Each process counts what it
does itself; sum them across replicas."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder


def exposition(accept: str | None) -> tuple[bytes, str]:
    """The metrics and their content type, negotiated on the scraper's Accept header as
    prometheus-client's ASGI app does for the consumer services: Prometheus text (0.0.4) unless
    OpenMetrics (or text 1.0.0) is asked for. Every service answers alike."""
    encode, content_type = choose_encoder(accept or "")
    return encode(REGISTRY), content_type


# Jobs take seconds to hours: clones of large templates are slow.
JOB_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600)

HTTP_REQUEST_SECONDS = Histogram(
    "edfi_im_http_request_duration_seconds",
    "Gateway requests by method, route template and status code, with their latency",
    ["method", "route", "status"],
)
JOBS_ACCEPTED = Counter(
    "edfi_im_jobs_accepted_total",
    "Jobs accepted (job row and command written), by type and by what asked for them",
    ["type", "source"],
)
JOBS_FINISHED = Counter(
    "edfi_im_jobs_finished_total",
    "Jobs that reached a terminal status, by type and outcome (Completed, Failed, Cancelled)",
    ["type", "outcome"],
)
JOB_SECONDS = Histogram(
    "edfi_im_job_duration_seconds",
    "Time from a job's acceptance to its terminal status, by type and outcome",
    ["type", "outcome"],
    buckets=JOB_BUCKETS,
)
OUTBOX_BACKLOG = Gauge(
    "edfi_im_outbox_backlog",
    "Outbox rows not yet published, as the relay last saw them, by tenant",
    ["tenant"],
)
OUTBOX_RELAY_DELAY_SECONDS = Histogram(
    "edfi_im_outbox_relay_delay_seconds",
    "Time from an outbox row's commit to its publication (confirmed by the broker)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
OUTBOX_PARKED = Counter(
    "edfi_im_outbox_parked_total",
    "Outbox rows the broker refused (unroutable, nacked), set aside so the rows behind them flow "
    "(`edfi-im outbox list`), by tenant",
    ["tenant"],
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "edfi_im_outbox_publish_failures_total", "Outbox publishes that failed and will be retried"
)
EVENT_APPLY_DELAY_SECONDS = Histogram(
    "edfi_im_event_apply_delay_seconds",
    "Time from an event's sending (its occurred_at) to the status service's commit of it",
    ["event"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
MESSAGES_CONSUMED = Counter(
    "edfi_im_messages_consumed_total", "Messages taken from a queue and handled", ["queue"]
)
MESSAGES_DEAD_LETTERED = Counter(
    "edfi_im_messages_dead_lettered_total",
    "Messages this process dead-lettered at once, by reason (unreadable, unknown tenant); "
    "those past their delivery limit are counted by RabbitMQ",
    ["reason"],
)
WRITES_REFUSED = Counter(
    "edfi_im_admin_writes_refused_total",
    "Admin-database writes refused in a way no retry can cure (a foreign key, a unique index, a "
    "value too long...), by service and SQLSTATE: the job fails at once with the reason",
    ["service", "sqlstate"],
)
RETRIES = Counter(
    "edfi_im_retries_total",
    "Retries after a transient error: a provisioning step, or a status transaction",
    ["stage"],
)
ORPHAN_RECOVERIES = Counter(
    "edfi_im_orphan_recoveries_total",
    "Running jobs found without a heartbeat, sent again or failed after too many recoveries",
    ["action"],
)
SCHEDULE_FIRES = Counter(
    "edfi_im_schedule_fires_total",
    "Schedule occurrences by outcome (fired, skipped, missed, refused)",
    ["outcome"],
)

EVENT_STREAMS = Gauge(
    "edfi_im_event_streams",
    "Server-Sent Events streams the gateway is serving now (/v2/events, /v2/jobs/{id}/events)",
)
EVENT_STREAMS_DROPPED = Counter(
    "edfi_im_event_streams_dropped_total",
    "Event streams closed because their client took no data for events_send_timeout_seconds",
)


def job_finished(
    job_type: str, outcome: str, created_at: datetime | None, finished_at: datetime | None
) -> None:
    JOBS_FINISHED.labels(job_type, outcome).inc()
    if created_at is not None and finished_at is not None:
        JOB_SECONDS.labels(job_type, outcome).observe(
            max(0.0, (finished_at - created_at).total_seconds())
        )
