"""Paths as Ed-Fi's clients write them, and Admin API's create rules and messages."""

from __future__ import annotations

import pytest

from services.gateway.edfi.manage import check_create
from services.gateway.paths import canonical

TEMPLATES = ["Minimal", "Sample"]


@pytest.mark.parametrize(
    ("given", "served"),
    [
        ("//connect/register", "/connect/register"),
        ("///connect//token", "/connect/token"),
        ("/Connect/Token", "/connect/token"),
        ("/v2/odsinstances/manage/7", "/v2/odsInstances/manage/7"),
        ("/V3/DATASTORES/MANAGE", "/v3/dataStores/manage"),
        (
            "/v2/tenants/District-B/ODSINSTANCES/EDORGS",
            "/v2/tenants/District-B/odsInstances/edOrgs",
        ),
        ("/v3/tenants/a/datastores/edorgs", "/v3/tenants/a/dataStores/edOrgs"),
        ("/adminConsole/odsInstances/7", "/adminconsole/odsinstances/7"),
        ("/v2/dbInstances/7", "/v2/dbInstances/7"),  # this system's own routes keep their case
        ("/v2/odsInstances/managed", "/v2/odsInstances/managed"),
        ("/", "/"),
        ("//", "/"),
    ],
)
def test_paths_are_served_as_written_by_ed_fi_clients(given: str, served: str) -> None:
    assert canonical(given) == served


def test_every_admin_api_rule_runs_with_its_own_message() -> None:
    assert check_create(None, None, TEMPLATES) == {
        "Name": ["'Name' must not be empty."],
        "DatabaseTemplate": [
            "'Database Template' must not be empty.",
            "'' is not a valid database template. Allowed values are: Minimal, Sample.",
        ],
    }
    errors = check_create("   ", "x" * 101, TEMPLATES)
    assert errors["Name"] == ["'Name' must not be empty."]
    assert errors["DatabaseTemplate"] == [
        "The length of 'Database Template' must be 100 characters or fewer. You entered 101 "
        "characters.",
        f"'{'x' * 101}' is not a valid database template. Allowed values are: Minimal, Sample.",
    ]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Grand Bend", None),
        (" Grand Bend ", None),  # Admin API trims, and so do these routes
        ("a" * 46, None),
        ("a" * 47, "'Name' must be 46 characters or fewer"),
        ("Grand-Bend", "'Name' may only contain letters, numbers, spaces, and underscores."),
        ("Grånd", "'Name' may only contain letters, numbers, spaces, and underscores."),
        ("Grand  Bend", "'Name' must not have two spaces in a row."),  # this system's own rule
        ("___", "'Name' must contain a letter or a digit."),
    ],
)
def test_names(name: str, message: str | None) -> None:
    errors = check_create(name, "Minimal", TEMPLATES)
    if message is None:
        assert errors == {}
    else:
        assert any(m.startswith(message) for m in errors["Name"]), errors


def test_the_template_must_be_one_configured_matching_case() -> None:
    assert check_create("A", "Sample", TEMPLATES) == {}
    assert check_create("A", "sample", TEMPLATES) == {
        "DatabaseTemplate": [
            "'sample' is not a valid database template. Allowed values are: Minimal, Sample."
        ]
    }
