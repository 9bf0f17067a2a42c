"""`/v2/deadLetters`: dead-lettered messages of the caller's tenant, and their requeue once the
cause is fixed (the checks of `just dead-letters requeue`: services.admin_db.dead_letters)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncConnection

from services.admin_db import dead_letters
from services.admin_db.requeue import RequeueRefusedError
from services.admin_db.tenants import TenantDatabase, UnknownTenantError
from services.gateway.problems import ProblemError
from services.gateway.schemas import CamelModel
from services.gateway.state import Gateway, request_tenant
from services.runtime.dead_letters import DeadLetter
from services.runtime.logging import get_logger

log = get_logger(__name__)
router = APIRouter(prefix="/v2", tags=["dead letters"])

QueueName = Literal["provisioner.dead", "status.dead", "scheduler.maintenance.dead"]
PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


class DeadLetterOut(CamelModel):
    message_id: str = Field(
        description=(
            "The id to requeue or discard it by: its message id, or for a message sent without "
            "one a digest of its body (`sha256-…`)"
        )
    )
    queue: str = Field(description="The dead-letter queue it waits in")
    type: str | None = Field(description="The message's contract and version")
    reason: str = Field(description="Why the broker dead-lettered it, in words")
    dead_lettered_at: str | None = Field(description="When it was dead-lettered (UTC)")
    from_queue: str | None = Field(description="The queue it was dead-lettered from")
    delivery_count: int | None = Field(
        description=(
            "Deliveries before it was dead-lettered, when known: the delivery limit, for a "
            "message that reached it (EDFI_IM_DELIVERY_LIMIT)"
        )
    )
    dead_letter_count: int = Field(description="Times it was dead-lettered from that queue")
    job_id: str | None
    instance_id: int | None
    operation: str | None
    tenant: str | None
    body: str = Field(description="The message as it was sent (JSON, as far as it is readable)")
    unreadable: str | None = Field(
        default=None,
        description=(
            "Why no service could ever handle it as it is (its body is not JSON, or not the "
            "contract of its queue): it cannot be requeued, only discarded. Null when readable"
        ),
    )


class RequeueOut(CamelModel):
    message_id: str
    queue: str
    result: str = Field(description="What was done: the job re-opened, the message sent on")


class DiscardOut(CamelModel):
    message_id: str
    queue: str
    result: str = Field(description="What was removed: its type, its job, why it was unreadable")


def _out(queue: str, letter: DeadLetter, delivery_limit: int) -> DeadLetterOut:
    return DeadLetterOut(
        message_id=letter.message_id,
        queue=queue,
        type=letter.type,
        reason=letter.why,
        dead_lettered_at=letter.dead_lettered_at,
        from_queue=letter.queue,
        delivery_count=delivery_limit if letter.death == "delivery_limit" else None,
        dead_letter_count=letter.deaths,
        job_id=letter.job_id,
        instance_id=letter.instance_id,
        operation=letter.operation,
        tenant=letter.tenant,
        body=letter.body,
        unreadable=letter.unreadable,
    )


def _visible_to(state: TenantDatabase) -> Callable[[DeadLetter], bool]:
    """Which letters the request may see: with tenants, those naming its tenant (the queues are
    shared by every tenant; a letter whose tenant cannot be read is for `just dead-letters`)."""
    if not state.settings.multi_tenant:
        return lambda _: True
    tenant = (state.tenant or "").lower()
    return lambda letter: (letter.tenant or "").lower() == tenant


@router.get(
    "/deadLetters",
    response_model=list[DeadLetterOut],
    summary="Dead-lettered messages of the tenant (commands, events, maintenance jobs)",
)
async def list_dead_letters(
    request: Request,
    queue: Annotated[QueueName | None, Query(description="Only this dead-letter queue")] = None,
) -> list[DeadLetterOut]:
    gateway: Gateway = request.app.state.gateway
    visible = _visible_to(request_tenant(request))
    out = []
    for name in [queue] if queue else dead_letters.QUEUES:
        letters = await dead_letters.list_dead(gateway.settings.rabbitmq_url, name, gateway.engine)
        limit = gateway.settings.delivery_limit
        out += [_out(name, letter, limit) for letter in letters if visible(letter)]
    return out


@router.post(
    "/deadLetters/{message_id}/requeue",
    response_model=RequeueOut,
    responses={404: PROBLEM, 409: PROBLEM, 422: PROBLEM},
    summary="Send a dead letter on again once its cause is fixed (re-opens its failed job)",
)
async def requeue_dead_letter(
    request: Request,
    message_id: Annotated[str, Path(max_length=200, description="The message's id")],
    queue: Annotated[QueueName, Query(description="The dead-letter queue it waits in")] = (
        "provisioner.dead"
    ),
) -> RequeueOut:
    gateway: Gateway = request.app.state.gateway
    state = request_tenant(request)

    async def in_tenant(
        tenant: str | None, work: Callable[[AsyncConnection], Awaitable[Any]]
    ) -> Any:
        async with gateway.databases.get(tenant).engine.begin() as conn:
            return await work(conn)

    try:
        result = await dead_letters.requeue(
            gateway.settings.rabbitmq_url,
            queue,
            message_id,
            lock=gateway.engine,
            in_tenant=in_tenant,
            visible=_visible_to(state),
        )
    except LookupError:
        raise ProblemError(404, "Not found", f"no message {message_id} in {queue}") from None
    except (RequeueRefusedError, UnknownTenantError, ValueError) as exc:
        raise ProblemError(409, "Requeue refused", str(exc)) from None
    log.info("dead letter requeued", message_id=message_id, queue=queue, result=result)
    return RequeueOut(message_id=message_id, queue=queue, result=result)


@router.post(
    "/deadLetters/{message_id}/discard",
    response_model=DiscardOut,
    responses={404: PROBLEM},
    summary="Remove a dead letter for good (one that is unreadable, or not to be sent again)",
)
async def discard_dead_letter(
    request: Request,
    message_id: Annotated[str, Path(max_length=200, description="The message's id")],
    queue: Annotated[QueueName, Query(description="The dead-letter queue it waits in")] = (
        "provisioner.dead"
    ),
) -> DiscardOut:
    gateway: Gateway = request.app.state.gateway
    try:
        result = await dead_letters.discard(
            gateway.settings.rabbitmq_url,
            queue,
            message_id,
            lock=gateway.engine,
            visible=_visible_to(request_tenant(request)),
        )
    except LookupError:
        raise ProblemError(404, "Not found", f"no message {message_id} in {queue}") from None
    log.warning("dead letter discarded", message_id=message_id, queue=queue, result=result)
    return DiscardOut(message_id=message_id, queue=queue, result=result)
