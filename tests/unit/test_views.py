"""A page of instances is serialised without a model per row (services/gateway/views.py): its
bytes must be exactly those of `list[DbInstance]`, the response model the API documents."""

from __future__ import annotations

import uuid
from collections import namedtuple
from datetime import UTC, datetime, timedelta

from pydantic import TypeAdapter

from services.admin_db.tables import db_instances
from services.gateway.schemas import DbInstance
from services.gateway.views import instance_out, instance_page_json

Row = namedtuple("Row", [c.name for c in db_instances.columns])  # type: ignore[misc]
NOW = datetime(2026, 11, 27, 21, 7, 9, 101993, tzinfo=UTC)


def _row(**values: object) -> Row:
    base: dict[str, object] = {c.name: None for c in db_instances.columns}
    base |= {
        "id": 7,
        "name": "Grand Bend",
        "status": "Completed",
        "databasetemplate": "Minimal",
        "databasename": "EdFi_Ods_Grand_Bend",
        "lastrefreshed": NOW,
        "createdat": NOW - timedelta(days=1),
        "imported": False,
    }
    return Row(**(base | values))


def test_a_page_is_the_bytes_of_its_response_model() -> None:
    rows = [
        _row(),
        _row(
            id=8,
            name="Renaming",
            status="PendingRename",
            currentjobid=uuid.UUID("4efdb72e-70a3-496e-ae33-fba2cb4ff436"),
            odsinstanceid=3,
            odsinstancename="Renaming",
            error='an earlier try failed: "quoted" \\ and ünïcode',
            pendingname="Renamed",
            pendingdatabasename="EdFi_Ods_Renamed",
            imported=True,
            lastmodifieddate=NOW + timedelta(microseconds=1),
            instancetype="OdsInstance",
            contexts=[{"contextKey": "schoolYear", "contextValue": "2027"}],
            derivatives=[{"derivativeType": "ReadReplica"}],
        ),
        _row(id=9, contexts=None, derivatives=None, lastmodifieddate=None),
    ]
    expected = TypeAdapter(list[DbInstance]).dump_json(
        [instance_out(r) for r in rows],  # type: ignore[arg-type]
        by_alias=True,
    )
    assert instance_page_json(rows) == expected  # type: ignore[arg-type]
    assert instance_page_json([]) == b"[]"


def test_every_field_of_the_model_is_in_the_page() -> None:
    """A field added to DbInstance and not to the page fails here, not in a client."""
    fields = [f.alias or name for name, f in DbInstance.model_fields.items()]
    page = TypeAdapter(list[dict[str, object]]).validate_json(
        instance_page_json([_row()])  # type: ignore[list-item]
    )
    assert list(page[0]) == fields
