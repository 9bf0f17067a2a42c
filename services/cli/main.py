"""`edfi-im`: set-up commands and the entry point of every service."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from services.rules.errors import ConfigurationError
from services.runtime.logging import configure_logging, get_logger
from services.runtime.settings import Settings, load_settings

SERVICES = ("gateway", "provisioner", "status", "scheduler")


def _run_service(name: str, settings: Settings) -> None:
    """Run one service in the foreground, once its admin databases are known to exist."""
    from services.cli.preflight import admin_databases_exist

    asyncio.run(admin_databases_exist(settings))
    if name == "gateway":
        import uvicorn

        from services.gateway.app import create_app as create_gateway
        from services.gateway.app import stopping
        from services.runtime.messaging import GracefulServer

        gateway = create_gateway(settings)
        config = uvicorn.Config(
            gateway,
            host=settings.gateway_host,
            port=settings.gateway_port,
            log_config=None,
            timeout_graceful_shutdown=int(settings.graceful_timeout_seconds),
        )
        GracefulServer(config, on_exit=stopping(gateway)).run()
        return
    from services.runtime.messaging import serve

    if name == "provisioner":
        from services.provisioner.app import create_app as create_provisioner

        app = create_provisioner(settings)
    elif name == "scheduler":
        from services.scheduler.app import create_app as create_scheduler

        app = create_scheduler(settings)
    else:
        from services.status.app import create_app as create_status

        app = create_status(settings)
    _run_loop(serve(app, settings))


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """A consumer service's event loop: uvloop where it exists (not on Windows), as the
    gateway's uvicorn runs on. Every message is a few socket round trips (the broker, the admin
    database, the ODS server), and uvloop's cost less CPU than asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        asyncio.run(main)
        return
    uvloop.run(main)


def _clients(parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Settings) -> int:
    """`edfi-im clients add|list|remove`: the secret of `add` is read from the environment
    (EDFI_IM_CLIENT_SECRET) or asked for, never taken from the command line."""
    import getpass
    import os

    from services.admin_db.engine import create_admin_engine
    from services.gateway import auth
    from services.rules.errors import RefusedError

    engine = create_admin_engine(settings.admin_database_url, pool_size=1)

    async def run() -> int:
        try:
            if args.action == "list":
                for client in await auth.list_clients(engine):
                    print(json.dumps(client))
                return 0
            if not args.client_id:
                parser.error(f"clients {args.action} needs a client id")
            if args.action == "remove":
                removed = await auth.remove_client(engine, args.client_id)
                print(f"client {args.client_id} {'removed' if removed else 'not found'}")
                return 0 if removed else 1
            secret = os.environ.get("EDFI_IM_CLIENT_SECRET")
            if not secret:
                if not sys.stdin.isatty():
                    print(
                        "clients add: no client secret: set EDFI_IM_CLIENT_SECRET (without a "
                        "terminal there is no prompt to ask for it)",
                        file=sys.stderr,
                    )
                    return 2
                secret = getpass.getpass("Client secret: ")
            tenants = None if args.tenants is None else args.tenants.split(",")
            scopes = auth.parse_scopes(args.scopes)
            name = args.name or args.client_id
            problems = auth.client_problems(args.client_id, secret, name, tenants, settings, scopes)
            for field, problem in problems.items():
                print(f"{field}: {problem}", file=sys.stderr)
            if problems:
                return 2
            try:
                await auth.register_client(engine, args.client_id, secret, name, tenants, scopes)
            except RefusedError as exc:
                print(exc.detail, file=sys.stderr)
                return 1
            print(f"client {args.client_id} added")
            return 0
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _outbox(parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Settings) -> int:
    """`edfi-im outbox list|requeue`: messages the broker refused, set aside by the relay."""
    from services.admin_db import outbox
    from services.admin_db.engine import create_admin_engine
    from services.admin_db.requeue import RequeueRefusedError
    from services.status.recovery import requeue_parked

    resolved = settings.tenant_settings().get(args.tenant)
    if resolved is None:
        print(f"no tenant {args.tenant!r} is configured (EDFI_IM_TENANTS)", file=sys.stderr)
        return 2
    engine = create_admin_engine(resolved.admin_database_url, pool_size=1)

    async def run() -> int:
        try:
            async with engine.begin() as conn:
                if args.action == "list":
                    rows = await outbox.parked(conn)
                    for row in rows:
                        print(
                            json.dumps(
                                {
                                    "id": row.id,
                                    "messageId": str(row.message_id),
                                    "type": row.message_type,
                                    "exchange": row.exchange,
                                    "routingKey": row.routing_key,
                                    "parkedAt": row.parked_at.isoformat(),
                                    "error": row.last_error,
                                    "jobId": row.body.get("job_id"),
                                }
                            )
                        )
                    print(f"{len(rows)} parked outbox row(s)")
                    return 0
                if args.outbox_id is None:
                    parser.error("outbox requeue needs an outbox id (see `outbox list`)")
                try:
                    print(await requeue_parked(conn, args.outbox_id))
                except RequeueRefusedError as exc:
                    print(f"refused: {exc}", file=sys.stderr)
                    return 1
                return 0
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _dead_letters(
    parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Settings
) -> int:
    """`edfi-im dead-letters list|requeue|discard`."""
    from services.admin_db.requeue import RequeueRefusedError
    from services.admin_db.tenants import UnknownTenantError
    from services.cli import deadletters

    if args.action == "list":
        letters = asyncio.run(deadletters.list_dead(settings, args.queue))
        for letter in letters:
            print(json.dumps(letter.as_dict()))
        unreadable = sum(1 for letter in letters if letter.unreadable)
        print(
            f"{len(letters)} dead-lettered message(s) in {args.queue}"
            + (f", {unreadable} unreadable (discard them)" if unreadable else "")
        )
        return 0
    if not args.message_id:
        parser.error(f"{args.action} needs a message id (see `dead-letters list`)")
    act = deadletters.requeue if args.action == "requeue" else deadletters.discard
    try:
        print(asyncio.run(act(settings, args.queue, args.message_id)))
    except LookupError as exc:
        print(f"not found: {exc}", file=sys.stderr)
        return 1
    except (RequeueRefusedError, UnknownTenantError, ValueError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    return 0


def _check_file(path: Path, expected: str) -> bool:
    return path.exists() and path.read_text() == expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edfi-im", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one service in the foreground")
    run.add_argument("service", choices=SERVICES)
    sub.add_parser("migrate", help="create the admin database if needed and apply migrations")
    topo = sub.add_parser("topology", help="declare the RabbitMQ topology")
    topo.add_argument("--export", action="store_true", help="write infra/rabbitmq/definitions.json")
    sub.add_parser("templates", help="create missing development template databases")
    setup = sub.add_parser("setup", help="migrate, declare the topology, create dev templates")
    setup.add_argument("--no-templates", action="store_true")
    dead = sub.add_parser(
        "dead-letters", help="list dead-lettered messages, requeue one, or discard one"
    )
    dead.add_argument("action", choices=("list", "requeue", "discard"))
    dead.add_argument("message_id", nargs="?")
    dead.add_argument(
        "--queue",
        default="provisioner.dead",
        choices=("provisioner.dead", "status.dead", "scheduler.maintenance.dead"),
    )
    parked = sub.add_parser(
        "outbox", help="list the outbox rows the broker refused (parked), or requeue one"
    )
    parked.add_argument("action", choices=("list", "requeue"))
    parked.add_argument("outbox_id", nargs="?", type=int)
    parked.add_argument("--tenant", help="the tenant whose admin database holds it")
    api_clients = sub.add_parser(
        "clients", help="manage the gateway's API clients (when self-registration is off)"
    )
    api_clients.add_argument("action", choices=("add", "list", "remove"))
    api_clients.add_argument("client_id", nargs="?")
    api_clients.add_argument("--name", help="display name (add)")
    api_clients.add_argument("--tenants", help="comma-separated tenants it is limited to (add)")
    api_clients.add_argument(
        "--scopes",
        help="the scopes it may ask tokens for, e.g. edfi_admin_api/read_only (add; default: all)",
    )
    adopting = sub.add_parser(
        "adopt",
        help="make the database of an imported instance this system's (to rename or drop it)",
    )
    adopting.add_argument("instance_id", type=int)
    adopting.add_argument("--tenant", help="the instance's tenant (multi-tenant mode)")
    schemas = sub.add_parser(
        "schemas", help="export the contracts' JSON Schema and the services' AsyncAPI documents"
    )
    schemas.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
    except ConfigurationError as exc:
        print(f"edfi-im: configuration error: {exc}", file=sys.stderr)
        return 2
    service = args.service if args.command == "run" else "edfi-im"
    configure_logging(service, settings.log_level, settings.log_format)
    log = get_logger("edfi-im")
    try:
        if args.command == "run":
            _run_service(args.service, settings)
        elif args.command == "migrate":
            from services.admin_db.migrate import migrate_all

            migrate_all(settings)
        elif args.command == "topology":
            from services.runtime import topology

            if args.export:
                topology.DEFINITIONS_FILE.parent.mkdir(parents=True, exist_ok=True)
                topology.DEFINITIONS_FILE.write_text(
                    topology.render_definitions(settings.shard_count, settings.delivery_limit)
                )
            else:
                asyncio.run(
                    topology.declare_topology(
                        settings.rabbitmq_url, settings.shard_count, settings.delivery_limit
                    )
                )
                log.info("topology declared", shards=settings.shard_count)
        elif args.command == "templates":
            from services.runtime.templates import ensure_all_templates

            ensure_all_templates(settings)
        elif args.command == "setup":
            from services.admin_db.migrate import migrate_all
            from services.runtime import topology
            from services.runtime.templates import ensure_all_templates

            migrate_all(settings)
            asyncio.run(
                topology.declare_topology(
                    settings.rabbitmq_url, settings.shard_count, settings.delivery_limit
                )
            )
            log.info("topology declared", shards=settings.shard_count)
            if not args.no_templates:
                ensure_all_templates(settings)
            if settings.uses_development_key and settings.is_development:
                log.warning(
                    "ODS_CONNECTION_STRING_ENCRYPTION_KEY is not set: the services will use the "
                    "public development key"
                )
        elif args.command == "adopt":
            from services.provisioner.adopt import AdoptionRefusedError, adopt

            try:
                print(asyncio.run(adopt(settings, args.tenant, args.instance_id)))
            except AdoptionRefusedError as exc:
                log.error("adoption refused", reason=str(exc))
                print(f"refused: {exc}", file=sys.stderr)
                return 1
        elif args.command == "outbox":
            return _outbox(parser, args, settings)
        elif args.command == "clients":
            return _clients(parser, args, settings)
        elif args.command == "dead-letters":
            return _dead_letters(parser, args, settings)
        elif args.command == "schemas":
            from contracts import schema_export
            from services.cli import documents as asyncapi

            if args.check:
                stale = [
                    name
                    for name, text in schema_export.rendered().items()
                    if not _check_file(schema_export.SCHEMA_DIR / name, text)
                ] + [
                    f"asyncapi/{name}"
                    for name, text in asyncapi.rendered().items()
                    if not _check_file(asyncapi.ASYNCAPI_DIR / name, text)
                ]
                if stale:
                    log.error("contract schemas are stale; run `just schemas`", files=stale)
                    return 1
            else:
                schema_export.export()
                asyncapi.export()
    except ConfigurationError as exc:
        print(f"edfi-im: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
