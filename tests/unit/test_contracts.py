"""Message contracts: their exported JSON Schema, type names and parsing."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import unquote

import pytest
from pydantic import ValidationError

from contracts import schema_export
from contracts.messages import (
    ALL_MESSAGES,
    EVENT_TYPES,
    Envelope,
    InstanceCreated,
    InstanceCreateFailed,
    InstanceDeleted,
    InstanceDeleteFailed,
    InstanceOperationProgress,
    InstanceOperationRetrying,
    InstanceOperationStarted,
    InstanceRenamed,
    InstanceRenameFailed,
    InstanceRequested,
    MaintenanceRequested,
    Message,
    Operation,
    UnknownMessageTypeError,
    message_type,
    parse_event,
)
from services.cli import documents as asyncapi

SECRET_WORDS = ("connection", "password", "secret", "key", "token", "credential")


def _all_message_classes() -> set[type[Envelope]]:
    found: set[type[Envelope]] = set(ALL_MESSAGES)
    pending: list[type[Envelope]] = [Envelope]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("contracts."):
                found.add(sub)
                pending.append(sub)
    return found


# --- schema drift ------------------------------------------------------------------------------


def test_every_contract_schema_file_is_up_to_date() -> None:
    rendered = schema_export.rendered()
    on_disk = {p.name for p in schema_export.SCHEMA_DIR.glob("*.json")}
    hint = "contracts/schemas is out of date with contracts/messages.py: run `just schemas`"

    assert on_disk == set(rendered), hint
    for name, text in rendered.items():
        assert (schema_export.SCHEMA_DIR / name).read_text() == text, f"{name}: {hint}"


def test_every_asyncapi_document_is_up_to_date_and_names_each_queue_and_contract() -> None:
    rendered = asyncapi.rendered()
    hint = "contracts/asyncapi is out of date with the services: run `just schemas`"
    assert set(rendered) == {"provisioner.json", "status.json", "scheduler.json"}
    for name, text in rendered.items():
        assert (asyncapi.ASYNCAPI_DIR / name).read_text() == text, f"{name}: {hint}"
    documents = {name: json.loads(text) for name, text in rendered.items()}
    for document in documents.values():
        assert document["asyncapi"] == "3.0.0"

    def receives(name: str) -> dict[str, Any]:
        operations = documents[f"{name}.json"]["operations"].values()
        return {
            unquote(op["channel"]["$ref"].rsplit("/", 1)[-1]): op
            for op in operations
            if op["action"] == "receive"
        }

    def sends(name: str) -> set[str]:
        return {
            unquote(op["channel"]["$ref"].rsplit("/", 1)[-1])
            for op in documents[f"{name}.json"]["operations"].values()
            if op["action"] == "send"
        }

    assert set(receives("provisioner")) == {f"provisioner.shard.{k}" for k in range(8)}
    assert sends("provisioner") == {"instances.events:instance.{instanceId}.{event}"}
    assert set(receives("status")) == {"status.events", "status.dead-commands"}
    assert set(receives("scheduler")) == {"scheduler.maintenance"}
    assert (
        {
            "instances.requests:{instanceId} (or {tenant}.{instanceId})",
            "maintenance.requests:maintenance",
        }
        == sends("scheduler")
        == sends("status")
    )
    # The payloads are the contracts, each with its type as $id (not FastStream's `Any`).
    text = rendered["status.json"]
    for cls in EVENT_TYPES.values():
        assert f'"$id": "{message_type(cls)}"' in text
    assert f'"$id": "{message_type(InstanceRequested)}"' in rendered["provisioner.json"]
    assert f'"$id": "{message_type(MaintenanceRequested)}"' in rendered["scheduler.json"]


def test_every_contract_has_a_schema() -> None:
    rendered = schema_export.rendered()
    for cls in ALL_MESSAGES:
        schema = json.loads(rendered[f"{message_type(cls)}.json"])
        assert schema["$id"] == message_type(cls)
        assert set(schema["properties"]) == {
            field.alias or name for name, field in cls.model_fields.items()
        }


# --- type names --------------------------------------------------------------------------------


def test_message_type_names_contract_and_version() -> None:
    assert message_type(InstanceRequested) == "edfi.instances.InstanceRequested.v1"


def test_message_type_of_an_instance_equals_that_of_its_class() -> None:
    event = InstanceCreated(job_id=uuid.uuid4(), instance_id=1, database_name="EdFi_Ods_X")
    assert message_type(event) == message_type(InstanceCreated)


def test_message_types_are_unique() -> None:
    names = [message_type(cls) for cls in ALL_MESSAGES]
    assert len(names) == len(set(names))


# --- parsing events ----------------------------------------------------------------------------


def _created_body() -> dict[str, object]:
    return {"job_id": str(uuid.uuid4()), "instance_id": 3, "database_name": "EdFi_Ods_X"}


@pytest.mark.parametrize(
    "event",
    [
        InstanceOperationStarted(
            job_id=uuid.uuid4(), instance_id=1, operation=Operation.CREATE, attempt=2, worker="w"
        ),
        InstanceOperationProgress(
            job_id=uuid.uuid4(),
            instance_id=1,
            tenant="t",
            operation=Operation.CREATE,
            message="Cloning",
            percent=30,
        ),
        InstanceCreated(job_id=uuid.uuid4(), instance_id=1, database_name="EdFi_Ods_X"),
        InstanceCreateFailed(
            job_id=uuid.uuid4(), instance_id=1, database_name="EdFi_Ods_X", reason="exists"
        ),
    ],
    ids=lambda e: type(e).__name__,
)
def test_event_round_trips_through_its_type_header_and_json(event: Message) -> None:
    body = event.model_dump_json()
    for payload in (body, body.encode("utf-8"), json.loads(body)):
        assert parse_event(message_type(event), payload) == event


@pytest.mark.parametrize(
    "type_header",
    [
        None,
        "",
        "InstanceCreated",
        "edfi.instances.InstanceCreated.v2",
        "edfi.instances.InstanceCreated",
        "EDFI.INSTANCES.INSTANCECREATED.V1",
        "edfi.instances.InstanceRequested.v1",  # a command, not an event
    ],
)
def test_unknown_type_header_is_rejected(type_header: str | None) -> None:
    with pytest.raises(UnknownMessageTypeError):
        parse_event(type_header, json.dumps(_created_body()))


def test_body_with_an_extra_field_is_rejected() -> None:
    body = {**_created_body(), "connection_string": "host=db;password=x"}
    with pytest.raises(ValidationError):
        parse_event(message_type(InstanceCreated), json.dumps(body))
    with pytest.raises(ValidationError):
        parse_event(message_type(InstanceCreated), body)


def test_body_missing_a_required_field_is_rejected() -> None:
    body = _created_body()
    del body["database_name"]
    with pytest.raises(ValidationError):
        parse_event(message_type(InstanceCreated), json.dumps(body))


def test_body_that_is_not_json_is_rejected() -> None:
    with pytest.raises(ValidationError):
        parse_event(message_type(InstanceCreated), b"not json")


def test_body_of_another_event_type_is_rejected() -> None:
    body = _created_body()
    with pytest.raises(ValidationError):
        parse_event(message_type(InstanceCreateFailed), json.dumps(body))


@pytest.mark.parametrize("instance_id", [0, -1])
def test_instance_id_must_be_positive(instance_id: int) -> None:
    with pytest.raises(ValidationError):
        parse_event(message_type(InstanceCreated), {**_created_body(), "instance_id": instance_id})


@pytest.mark.parametrize("percent", [-1, 101])
def test_progress_percent_is_between_0_and_100(percent: int) -> None:
    with pytest.raises(ValidationError):
        InstanceOperationProgress(
            job_id=uuid.uuid4(),
            instance_id=1,
            operation=Operation.CREATE,
            message="x",
            percent=percent,
        )


def test_messages_are_immutable() -> None:
    event = InstanceCreated(job_id=uuid.uuid4(), instance_id=1, database_name="EdFi_Ods_X")
    with pytest.raises(ValidationError):
        event.database_name = "EdFi_Ods_Y"  # type: ignore[misc]


def test_event_registry_holds_exactly_the_events() -> None:
    assert set(EVENT_TYPES.values()) == {
        InstanceOperationStarted,
        InstanceOperationProgress,
        InstanceOperationRetrying,
        InstanceCreated,
        InstanceCreateFailed,
        InstanceRenamed,
        InstanceRenameFailed,
        InstanceDeleted,
        InstanceDeleteFailed,
    }
    for name, cls in EVENT_TYPES.items():
        assert name == message_type(cls)


# --- no secrets --------------------------------------------------------------------------------


def _suggests_secret(field_name: str) -> bool:
    lowered = field_name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def test_no_contract_has_a_field_that_suggests_a_secret() -> None:
    offenders = [
        f"{cls.__name__}.{name}"
        for cls in sorted(_all_message_classes(), key=lambda c: c.__name__)
        for name, field in cls.model_fields.items()
        if _suggests_secret(name) or _suggests_secret(field.alias or "")
    ]
    assert offenders == [], "messages must never carry a connection string or other secret"


@pytest.mark.parametrize(
    "name", ["connection_string", "ConnectionString", "db_password", "api_secret", "key"]
)
def test_secret_field_check_recognises_secret_names(name: str) -> None:
    assert _suggests_secret(name)


def test_secret_field_check_sees_every_contract() -> None:
    classes = _all_message_classes()
    assert set(ALL_MESSAGES) <= classes
    assert InstanceRequested in classes


def test_a_command_that_is_not_a_copy_carries_no_copy_fields() -> None:
    """A provisioner of the previous release forbids unknown fields: it must still read every
    command that is not a copy."""
    plain = InstanceRequested(
        job_id=uuid.uuid4(),
        instance_id=1,
        operation=Operation.CREATE,
        database_name="EdFi_Ods_A",
        database_template="EdFi_Ods_Minimal_Template",
    )
    body = json.loads(plain.model_dump_json())
    assert "source_instance_id" not in body and "end_source_sessions" not in body
    previous = set(InstanceRequested.model_fields) - set(InstanceRequested.COPY_FIELDS)
    assert set(body) <= previous
    copy = plain.model_copy(update={"source_instance_id": 3, "end_source_sessions": True})
    body = json.loads(copy.model_dump_json())
    assert body["source_instance_id"] == 3 and body["end_source_sessions"] is True
    assert InstanceRequested.model_validate(body) == copy
