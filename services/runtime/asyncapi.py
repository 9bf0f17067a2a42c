"""The AsyncAPI documents of the consumer services, from FastStream's own generator.

The handlers read their contract from the raw bytes themselves (an unreadable message is
dead-lettered, not retried), so their body parameter is `Any` at run time, annotated with the
contracts' JSON Schema (`contract_schema`) for the document only. `edfi-im schemas` writes
the documents to contracts/asyncapi/ (services/cli/documents.py; `--check` fails when they are
stale, as the tests do).
"""

from __future__ import annotations

from typing import Any

from faststream._internal.broker import BrokerUsecase
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange
from faststream.specification import AsyncAPI

from contracts.messages import (
    Envelope,
    InstanceRequested,
    MaintenanceRequested,
    message_type,
)
from services.runtime.topology import (
    MAINTENANCE_EXCHANGE,
    MAINTENANCE_ROUTING_KEY,
    REQUESTS_EXCHANGE,
)

VERSION = "0.1.0"


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic schema with its `$defs` put in place (the document has no room for them)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(dict(defs[node["$ref"].rsplit("/", 1)[-1]]))
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        return node

    result: dict[str, Any] = walk(schema)
    return result


def contract_schema(*models: type[Envelope]) -> dict[str, Any]:
    """JSON Schema of one contract, or of any of several (`oneOf`), each with its type as `$id`."""
    schemas = []
    for model in models:
        schema = _inline(model.model_json_schema())
        schema["$id"] = message_type(model)
        schemas.append(schema)
    return schemas[0] if len(schemas) == 1 else {"oneOf": schemas}


def document_publisher(
    broker: RabbitBroker,
    exchange: str,
    exchange_type: ExchangeType,
    routing_key: str,
    schema: Any,
    description: str,
) -> None:
    """Name in the document what the service sends (events directly; commands through its
    outbox). The exchange is declared by the topology, never by this publisher."""
    broker.publisher(
        exchange=RabbitExchange(exchange, type=exchange_type, declare=False),
        routing_key=routing_key,
        title=f"{exchange}:{routing_key}",
        description=description,
        schema=schema,
    )


def document_commands(broker: RabbitBroker, description: str) -> None:
    """Instance commands (to their shard) and maintenance commands, sent through the outbox."""
    document_publisher(
        broker,
        REQUESTS_EXCHANGE,
        ExchangeType.X_CONSISTENT_HASH,
        "{instanceId} (or {tenant}.{instanceId})",
        InstanceRequested,
        description,
    )
    document_publisher(
        broker,
        MAINTENANCE_EXCHANGE,
        ExchangeType.DIRECT,
        MAINTENANCE_ROUTING_KEY,
        MaintenanceRequested,
        description,
    )


def specification(
    broker: BrokerUsecase[Any, Any, Any] | None, service: str, description: str
) -> AsyncAPI:
    assert broker is not None, "the app has no broker"
    return AsyncAPI(
        broker,
        title=f"Ed-Fi ODS instance manager: {service}",
        version=VERSION,
        description=description,
    )
