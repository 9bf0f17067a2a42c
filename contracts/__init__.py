"""Messages shared by every service: versioned pydantic models, JSON Schema in contracts/schemas."""

from contracts.messages import (
    ALL_MESSAGES,
    EVENT_TYPES,
    InstanceCreated,
    InstanceCreateFailed,
    InstanceEvent,
    InstanceOperationProgress,
    InstanceOperationStarted,
    InstanceRequested,
    Message,
    Operation,
    message_type,
    parse_event,
)

__all__ = [
    "ALL_MESSAGES",
    "EVENT_TYPES",
    "InstanceCreateFailed",
    "InstanceCreated",
    "InstanceEvent",
    "InstanceOperationProgress",
    "InstanceOperationStarted",
    "InstanceRequested",
    "Message",
    "Operation",
    "message_type",
    "parse_event",
]
