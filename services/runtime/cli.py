"""`edfi-im`: set-up commands and the entry point of every service."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from services.runtime.errors import ConfigurationError
from services.runtime.logging import configure_logging, get_logger
from services.runtime.settings import Settings

SERVICES = ("gateway", "provisioner", "status", "scheduler")


def _run_service(name: str, settings: Settings) -> None:
    if name == "gateway":
        import uvicorn

        from services.gateway.app import create_app as create_gateway
        from services.runtime.messaging import GracefulServer

        config = uvicorn.Config(
            create_gateway(settings),
            host=settings.gateway_host,
            port=settings.gateway_port,
            log_config=None,
            timeout_graceful_shutdown=int(settings.graceful_timeout_seconds),
        )
        GracefulServer(config).run()
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
    asyncio.run(serve(app, settings))


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
    dead = sub.add_parser("dead-letters", help="list dead-lettered messages, or requeue one")
    dead.add_argument("action", choices=("list", "requeue"))
    dead.add_argument("message_id", nargs="?")
    dead.add_argument(
        "--queue",
        default="provisioner.dead",
        choices=("provisioner.dead", "status.dead", "scheduler.maintenance.dead"),
    )
    schemas = sub.add_parser("schemas", help="export the contracts' JSON Schema")
    schemas.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)

    settings = Settings()
    service = args.service if args.command == "run" else "edfi-im"
    configure_logging(service, settings.log_level, settings.log_format)
    log = get_logger("edfi-im")
    try:
        if args.command == "run":
            _run_service(args.service, settings)
        elif args.command == "migrate":
            from services.runtime.migrate import migrate

            migrate(settings.admin_database_url)
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
            from services.runtime.templates import ensure_templates

            ensure_templates(settings.ods_server_url, settings.templates)
        elif args.command == "setup":
            from services.runtime import topology
            from services.runtime.migrate import migrate
            from services.runtime.templates import ensure_templates

            migrate(settings.admin_database_url)
            asyncio.run(
                topology.declare_topology(
                    settings.rabbitmq_url, settings.shard_count, settings.delivery_limit
                )
            )
            log.info("topology declared", shards=settings.shard_count)
            if not args.no_templates:
                ensure_templates(settings.ods_server_url, settings.templates)
            if settings.uses_development_key and settings.is_development:
                log.warning(
                    "ODS_CONNECTION_STRING_ENCRYPTION_KEY is not set: the services will use the "
                    "public development key"
                )
        elif args.command == "dead-letters":
            from services.runtime import deadletters

            if args.action == "list":
                letters = asyncio.run(deadletters.list_dead(settings, args.queue))
                for letter in letters:
                    print(json.dumps(letter.__dict__))
                print(f"{len(letters)} dead-lettered message(s) in {args.queue}")
            else:
                if not args.message_id:
                    parser.error("requeue needs a message id (see `dead-letters list`)")
                try:
                    done = asyncio.run(deadletters.requeue(settings, args.queue, args.message_id))
                except Exception as exc:
                    log.error("requeue refused", error=str(exc))
                    return 1
                print(done)
        elif args.command == "schemas":
            from contracts import schema_export

            if args.check:
                stale = [
                    name
                    for name, text in schema_export.rendered().items()
                    if not _check_file(schema_export.SCHEMA_DIR / name, text)
                ]
                if stale:
                    log.error("contract schemas are stale; run `just schemas`", files=stale)
                    return 1
            else:
                schema_export.export()
    except ConfigurationError as exc:
        log.error("configuration error", error=str(exc))
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
