"""The one mapping between this system's statuses and Ed-Fi ODS-Admin-API's, both ways."""

from __future__ import annotations

import pytest

from services.rules.edfi_status import EdFiStatus, from_edfi, to_edfi
from services.rules.states import InstanceStatus

# Every status here, with what Ed-Fi's Admin App must show for it.
EXPECTED = {
    "Pending": "PendingCreate",
    "InProgress": "CreateInProgress",
    "Completed": "Created",
    "Error": "CreateError",
    "Pending_Rename": "Created",
    "Rename_Failed": "Created",
    "Pending_Delete": "PendingDelete",
    "Deleted": "Deleted",
    "Delete_Failed": "DeleteError",
}


def test_every_status_here_has_its_edfi_name() -> None:
    assert {s.value for s in InstanceStatus} == set(EXPECTED)
    for ours, theirs in EXPECTED.items():
        assert to_edfi(ours) == theirs


def test_a_delete_whose_job_runs_is_in_progress() -> None:
    assert to_edfi("Pending_Delete", "Running") == "DeleteInProgress"
    assert to_edfi("Pending_Delete", "Pending") == "PendingDelete"


@pytest.mark.parametrize("theirs", list(EdFiStatus))
def test_every_edfi_status_maps_back_to_what_gives_it(theirs: EdFiStatus) -> None:
    ours = from_edfi(theirs.value)
    for status in ours:
        assert to_edfi(status.value, "Running") == theirs or to_edfi(status.value) == theirs
    given = {to_edfi(s) for s in EXPECTED} | {to_edfi("Pending_Delete", "Running")}
    assert bool(ours) == (theirs in given)  # only the retry-promising *Failed are never given


def test_the_failed_statuses_are_never_given() -> None:
    assert from_edfi("CreateFailed") == frozenset()
    assert from_edfi("DeleteFailed") == frozenset()
    assert from_edfi("Created") == {
        InstanceStatus.COMPLETED,
        InstanceStatus.PENDING_RENAME,
        InstanceStatus.RENAME_FAILED,
    }
