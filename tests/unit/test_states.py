"""The state machine: which requests an instance accepts, and where outcomes lead."""

from __future__ import annotations

import pytest

from contracts.messages import Operation
from services.rules.states import (
    IN_FLIGHT,
    InstanceStatus,
    JobStatus,
    check_request,
    is_terminal,
    on_started,
    outcome,
)

S = InstanceStatus


@pytest.mark.parametrize("status", [S.COMPLETED, S.RENAME_FAILED])
def test_rename_is_accepted_on_an_instance_with_a_database(status: InstanceStatus) -> None:
    assert check_request(Operation.RENAME, status) is None


@pytest.mark.parametrize("status", [S.COMPLETED, S.ERROR, S.RENAME_FAILED, S.DELETE_FAILED])
def test_delete_is_accepted_from_every_settled_status(status: InstanceStatus) -> None:
    assert check_request(Operation.DELETE, status) is None


@pytest.mark.parametrize(
    ("status", "running"),
    [
        (S.PENDING, Operation.CREATE),
        (S.IN_PROGRESS, Operation.CREATE),
        (S.PENDING_RENAME, Operation.RENAME),
        (S.PENDING_DELETE, Operation.DELETE),
    ],
)
@pytest.mark.parametrize("operation", [Operation.RENAME, Operation.DELETE])
def test_any_request_while_an_operation_is_in_flight_is_a_conflict_naming_it(
    status: InstanceStatus, running: Operation, operation: Operation
) -> None:
    refusal = check_request(operation, status)
    assert refusal is not None
    assert refusal.http_status == 409
    assert refusal.in_flight == running
    assert running.value in refusal.reason


@pytest.mark.parametrize("operation", [Operation.RENAME, Operation.DELETE])
def test_a_deleted_instance_is_not_found(operation: Operation) -> None:
    refusal = check_request(operation, S.DELETED)
    assert refusal is not None
    assert refusal.http_status == 404


def test_an_instance_whose_create_failed_cannot_be_renamed() -> None:
    refusal = check_request(Operation.RENAME, S.ERROR)
    assert refusal is not None
    assert refusal.http_status == 409
    assert "delete" in refusal.reason


def test_after_a_failed_delete_only_another_delete_is_accepted() -> None:
    refusal = check_request(Operation.RENAME, S.DELETE_FAILED)
    assert refusal is not None
    assert refusal.http_status == 409
    assert check_request(Operation.DELETE, S.DELETE_FAILED) is None


def test_every_status_has_an_answer_for_every_request() -> None:
    for status in S:
        for operation in (Operation.RENAME, Operation.DELETE):
            refusal = check_request(operation, status)
            assert refusal is None or refusal.http_status in (404, 409)


def test_the_in_flight_statuses_are_the_pending_ones() -> None:
    assert set(IN_FLIGHT) == {S.PENDING, S.IN_PROGRESS, S.PENDING_RENAME, S.PENDING_DELETE}


def test_starting_a_create_shows_in_progress_and_other_operations_keep_their_status() -> None:
    assert on_started(S.PENDING) == S.IN_PROGRESS
    assert on_started(S.PENDING_RENAME) == S.PENDING_RENAME
    assert on_started(S.PENDING_DELETE) == S.PENDING_DELETE


@pytest.mark.parametrize(
    ("operation", "succeeded", "expected"),
    [
        (Operation.CREATE, True, (S.COMPLETED, JobStatus.COMPLETED)),
        (Operation.CREATE, False, (S.ERROR, JobStatus.FAILED)),
        (Operation.RENAME, True, (S.COMPLETED, JobStatus.COMPLETED)),
        (Operation.RENAME, False, (S.RENAME_FAILED, JobStatus.FAILED)),
        (Operation.DELETE, True, (S.DELETED, JobStatus.COMPLETED)),
        (Operation.DELETE, False, (S.DELETE_FAILED, JobStatus.FAILED)),
    ],
)
def test_outcomes(
    operation: Operation, succeeded: bool, expected: tuple[InstanceStatus, JobStatus]
) -> None:
    assert outcome(operation, succeeded) == expected


def test_completed_failed_and_cancelled_jobs_are_terminal() -> None:
    assert [s for s in JobStatus if is_terminal(s)] == [
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
    ]
