"""What the gateway's request handlers share, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime.outbox import OutboxRelay
from services.runtime.publisher import ConfirmingPublisher
from services.runtime.settings import Settings


@dataclass
class GatewayState:
    settings: Settings
    engine: AsyncEngine
    publisher: ConfirmingPublisher
    relay: OutboxRelay
