"""Instance and job statuses and the rules for moving between them."""

from __future__ import annotations

import pytest

from services.runtime.states import (
    IN_FLIGHT,
    InstanceStatus,
    JobStatus,
    is_terminal,
    on_create_outcome,
    on_started,
)


def test_a_started_create_moves_pending_to_in_progress() -> None:
    assert on_started(InstanceStatus.PENDING) is InstanceStatus.IN_PROGRESS


@pytest.mark.parametrize("status", [s for s in InstanceStatus if s is not InstanceStatus.PENDING])
def test_starting_work_leaves_every_other_status_unchanged(status: InstanceStatus) -> None:
    assert on_started(status) is status


def test_successful_create_completes_instance_and_job() -> None:
    assert on_create_outcome(True) == (InstanceStatus.COMPLETED, JobStatus.COMPLETED)


def test_failed_create_marks_instance_error_and_job_failed() -> None:
    assert on_create_outcome(False) == (InstanceStatus.ERROR, JobStatus.FAILED)


@pytest.mark.parametrize(
    "status",
    [
        InstanceStatus.PENDING,
        InstanceStatus.IN_PROGRESS,
        InstanceStatus.PENDING_RENAME,
        InstanceStatus.PENDING_DELETE,
    ],
)
def test_instance_with_an_operation_under_way_is_in_flight(status: InstanceStatus) -> None:
    assert status in IN_FLIGHT


@pytest.mark.parametrize(
    "status",
    [
        InstanceStatus.COMPLETED,
        InstanceStatus.ERROR,
        InstanceStatus.RENAME_FAILED,
        InstanceStatus.DELETED,
        InstanceStatus.DELETE_FAILED,
    ],
)
def test_settled_instance_is_not_in_flight(status: InstanceStatus) -> None:
    assert status not in IN_FLIGHT


def test_in_flight_accepts_plain_strings_read_from_the_database() -> None:
    assert "InProgress" in IN_FLIGHT
    assert "Completed" not in IN_FLIGHT


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED, "Completed", "Failed"])
def test_completed_and_failed_jobs_are_terminal(status: str) -> None:
    assert is_terminal(status)


@pytest.mark.parametrize(
    "status", [JobStatus.PENDING, JobStatus.RUNNING, "Pending", "Running", "completed", ""]
)
def test_pending_running_and_unknown_jobs_are_not_terminal(status: str) -> None:
    assert not is_terminal(status)
