"""The provisioner: consumes its shards, one message at a time per shard, in order."""

from __future__ import annotations

import asyncio
import functools
import os
import socket
from dataclasses import dataclass, field

from faststream import FastStream
from faststream.asgi import AsgiFastStream
from faststream.rabbit import ExchangeType, RabbitBroker
from faststream.specification import AsyncAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.messages import InstanceEvent, InstanceRequested
from services.admin_db import jobs
from services.admin_db.deployment import deployment_id
from services.admin_db.engine import create_admin_engine, database_identity
from services.admin_db.tenants import UnknownTenantError
from services.provisioner.handler import Emit, Provisioner
from services.provisioner.membership import (
    Membership,
    MssqlMembership,
    deployment_of,
    group_key,
    membership_for,
)
from services.provisioner.shards import ShardConsumers
from services.runtime.asyncapi import document_publisher, specification
from services.runtime.logging import get_logger
from services.runtime.messaging import consumer_app, make_broker, publish_event
from services.runtime.ods_server import KEEP_AT_MOST, PostgresOdsServer
from services.runtime.ods_servers import OdsServerEngine, open_ods_server
from services.runtime.settings import Settings
from services.runtime.startup import (
    BackgroundTasks,
    declare_topology_when_available,
    when_available,
)
from services.runtime.topology import EVENTS_EXCHANGE, shard_queue
from services.runtime.watchdog import Watchdog

log = get_logger(__name__)


def worker_id() -> str:
    return f"provisioner:{socket.gethostname()}:{os.getpid()}"


DESCRIPTION = (
    "Carries out InstanceRequested commands (create, rename, delete an ODS database), one at a "
    "time per shard, and publishes what happens to instances.events."
)


def document_events(broker: RabbitBroker) -> None:
    document_publisher(
        broker,
        EVENTS_EXCHANGE,
        ExchangeType.TOPIC,
        "instance.{instanceId}.{event}",
        InstanceEvent,
        "Started (once the attempt has lasted the progress delay), progress (also the "
        "heartbeat), retrying, then exactly one outcome per job",
    )


def asyncapi(settings: Settings) -> AsyncAPI:
    """The document: every shard's subscriber, and the events."""
    broker = make_broker(settings, "asyncapi")
    ShardConsumers(broker, _never).register(set(range(settings.shard_count)))
    document_events(broker)
    return specification(broker, "provisioner", DESCRIPTION)


async def _never(cmd: InstanceRequested, attempt: int) -> None:
    raise AssertionError("a document's broker handles nothing")


def protection_of(protected: dict[str, str], name: str) -> str | None:
    return protected.get(name.lower())


@dataclass
class Provisioning:
    """What the provisioner's handlers work with, built once at start-up: one Provisioner per
    tenant (each on its own ODS server, claiming in its own admin database), the shard
    consumers, and how this replica learns its share of the shards."""

    settings: Settings
    provisioners: dict[str | None, Provisioner]
    engines: list[AsyncEngine]
    membership: Membership | MssqlMembership | None
    static: set[int] | None
    servers: list[OdsServerEngine] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, emit: Emit) -> Provisioning:
        # Every lock is this deployment's: its clone slots by broker vhost (as its member
        # slots), each instance's by the tenant's admin database (where instance ids are unique).
        # Tenants that share an ODS server share its clone slots.
        deployment = deployment_of(settings.rabbitmq_url)
        servers: dict[str, OdsServerEngine] = {}
        engines: list[AsyncEngine] = []
        provisioners: dict[str | None, Provisioner] = {}
        for tenant, resolved in settings.tenant_settings().items():
            server = servers.setdefault(
                resolved.ods_server_url,
                open_ods_server(
                    resolved,
                    clone_slots=resolved.clone_concurrency,
                    deployment=deployment,
                    operations=settings.shard_count,
                ),
            )
            # A claim and a fence per command in hand, one per shard at most: a smaller pool
            # opens and closes connections under a bulk.
            engine = create_admin_engine(
                resolved.admin_database_url, pool_size=min(settings.shard_count, KEEP_AT_MOST)
            )
            engines.append(engine)
            protected = settings.protected_databases(resolved.ods_server_url)
            provisioners[tenant] = Provisioner(
                server,
                emit,
                worker=worker_id(),
                retry_attempts=settings.step_retry_attempts,
                heartbeat_interval=settings.heartbeat_interval_seconds,
                progress_delay=settings.progress_delay_seconds,
                claim=functools.partial(jobs.claim, engine),
                fence=functools.partial(jobs.fence, engine),
                protected=functools.partial(protection_of, protected),
                scope=database_identity(resolved.admin_database_url),
                deployment=functools.partial(deployment_id, engine),
            )
        static = set(settings.owned_shard_set()) if settings.owned_shards else None
        membership = (
            None
            if static is not None
            else membership_for(settings.ods_server_url, group_key(settings.rabbitmq_url))
        )
        return cls(settings, provisioners, engines, membership, static, list(servers.values()))


async def handle(p: Provisioning, cmd: InstanceRequested, attempt: int) -> None:
    """One command, carried out by its tenant's provisioner."""
    provisioner = p.provisioners.get(cmd.tenant)
    if provisioner is None:
        raise UnknownTenantError(cmd.tenant)
    await provisioner.handle(cmd, attempt)


async def current_share(p: Provisioning) -> set[int]:
    """The shards this replica owns now."""
    if p.static is not None:
        return p.static
    assert p.membership is not None
    return await p.membership.owned(p.settings.shard_count)


async def keep_assignment(p: Provisioning, shards: ShardConsumers) -> None:
    """Owned shards first; the rest later as standby (a replica that owns them gets there
    first); then follow the replicas as they come and go."""
    settings = p.settings
    await asyncio.sleep(settings.standby_delay_seconds)
    await shards.join(set(range(settings.shard_count)))
    log.info("standby on the other shards", owned=sorted(shards.owned))
    if p.membership is None:
        return
    while True:
        await asyncio.sleep(settings.membership_interval_seconds)
        try:
            await shards.rebalance(await p.membership.owned(settings.shard_count))
        except Exception as exc:  # keep the current assignment; safety does not need it
            log.warning("could not refresh the shard assignment", error=repr(exc))
            await p.membership.leave()


async def close(p: Provisioning) -> None:
    if p.membership is not None:
        await p.membership.leave()
    for engine in p.engines:
        await engine.dispose()
    for server in p.servers:
        if isinstance(server, PostgresOdsServer):
            await server.close()


def create_app(settings: Settings) -> FastStream | AsgiFastStream:
    broker = make_broker(settings, worker_id())
    document_events(broker)
    p = Provisioning.build(settings, functools.partial(publish_event, broker))
    shards = ShardConsumers(broker, functools.partial(handle, p))
    tasks = BackgroundTasks()
    watchdog = Watchdog.from_settings(
        broker, settings, lambda: [shard_queue(k) for k in range(settings.shard_count)]
    )

    async def on_startup() -> None:
        await declare_topology_when_available(settings)
        shards.register(
            await when_available(
                functools.partial(current_share, p),
                "join the replicas",
                settings.startup_wait_seconds,
            )
        )

    async def after_startup() -> None:
        log.info("provisioner started", owned_shards=sorted(shards.owned), worker=worker_id())
        tasks.start(keep_assignment(p, shards))
        tasks.start(watchdog.run())

    async def on_shutdown() -> None:
        await tasks.stop()
        log.info("provisioner stopping")

    async def after_shutdown() -> None:
        await close(p)

    return consumer_app(
        broker,
        settings,
        on_startup=[on_startup],
        after_startup=[after_startup],
        on_shutdown=[on_shutdown],
        after_shutdown=[after_shutdown],
    )
