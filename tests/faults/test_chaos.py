"""The fault suite (issue 4): invariants 1-4 and 6 under kill -9 of every service type, a
provisioner stalled past the orphan threshold, the loss of a RabbitMQ node, a restart of the
RabbitMQ cluster, ended PostgreSQL connections and a PostgreSQL restart - all on the suite's own
servers. `just faults` runs it (with the rest of tests/faults); `just chaos` runs it longer.
Both print the summary line."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import chaos
from tests.support.own import Own
from tests.support.stack import Stack

pytestmark = pytest.mark.faults

ORPHAN_THRESHOLD = 5.0
SECONDS = float(os.environ.get("CHAOS_SECONDS", "60"))


@pytest.fixture
def prefix(db_prefix: str) -> str:
    return f"{db_prefix}chaos{uuid.uuid4().hex[:6]}_"


@pytest.fixture
def system(
    own: Own, settings_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, prefix: str
) -> Iterator[Stack]:
    with own.cluster(
        settings_env,
        Path(tmp_path_factory.mktemp("chaos")),
        provisioners=2,
        shards=4,
        EDFI_IM_HEARTBEAT_INTERVAL_SECONDS="1",
        EDFI_IM_ORPHAN_THRESHOLD_SECONDS=str(ORPHAN_THRESHOLD),
        EDFI_IM_ORPHAN_CHECK_INTERVAL_SECONDS="1",
        EDFI_IM_MAX_RECOVERIES="20",
        EDFI_IM_STEP_RETRY_ATTEMPTS="8",
        EDFI_IM_LOG_LEVEL="INFO",
        EDFI_IM_DATABASE_NAME_PATTERN=prefix + "{name}",
    ) as stack:
        yield stack


@pytest.mark.timeout(int(SECONDS) + 600)
def test_under_faults_nothing_is_lost_duplicated_stuck_or_mismatched(
    system: Stack, own: Own, prefix: str, encryption_key: bytes
) -> None:
    summary = chaos.run(
        system,
        own,
        seconds=SECONDS,
        seed=int(os.environ.get("CHAOS_SEED", "11")),
        db_prefix=prefix,
        key=encryption_key,
        concurrency=int(os.environ.get("CHAOS_CONCURRENCY", "8")),
        fault_interval=(1.5, 3.0),
        orphan_threshold=ORPHAN_THRESHOLD,
        converge_timeout=180,
        every_fault=SECONDS >= 60,
    )
    print("\n" + summary.line())
    assert summary.operations > 20
    assert not [p for p in summary.problems if p.startswith("fault ")], summary.problems
    if SECONDS >= 60:  # every kind of fault, under the workload, however slow the machine
        assert set(summary.faults) == set(chaos.FAULTS), summary.line()
    assert summary.clean, "\n".join([summary.line(), *summary.problems[:40]])
