"""A whole system (gateway, status, provisioners) on its own vhost and admin database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import RUN_ID
from tests.support import pg, rabbit
from tests.support.stack import Stack


@contextmanager
def cluster(
    settings_env: dict[str, str],
    log_dir: Path,
    *,
    provisioners: int = 1,
    shards: int = 4,
    broker: rabbit.Broker = rabbit.LOCAL,
    pg_server: pg.Server = pg.LOCAL,
    **env: str,
) -> Iterator[Stack]:
    """The services on `broker` (a vhost of their own) and `pg_server` (the ODS server, and an
    admin database of their own): the machine's local ones unless told otherwise."""
    tag = uuid.uuid4().hex[:6]
    vhost = f"edfi_im_test_{RUN_ID}_{tag}"
    admin = f"edfi_admin_test_{RUN_ID}_{tag}"
    broker.create_vhost(vhost)
    pg_server.edfi_admin(admin)
    stack = Stack(
        env={
            **settings_env,
            "EDFI_IM_RABBITMQ_URL": broker.amqp_url(vhost),
            "EDFI_IM_ADMIN_DATABASE_URL": pg_server.database_url(admin),
            "EDFI_IM_ODS_SERVER_URL": pg_server.url,
            "EDFI_IM_SHARD_COUNT": str(shards),
            "EDFI_IM_STANDBY_DELAY_SECONDS": "0.5",
            "EDFI_IM_MEMBERSHIP_INTERVAL_SECONDS": "0.5",
            "EDFI_IM_LOG_LEVEL": "INFO",
            **env,
        },
        log_dir=log_dir,
        vhost=vhost,
        shard_count=shards,
        broker=broker,
        pg_server=pg_server,
    )
    try:
        stack.start("status")
        stack.start("gateway")
        for i in range(provisioners):
            stack.start(f"provisioner-{i}", "provisioner")
        stack.wait_ready()
        yield stack
    finally:
        stack.stop_all()
        broker.delete_vhost(vhost)
        if pg_server is pg.LOCAL:
            pg.drop_later(admin)  # with the run's others, at its end
        else:
            pg_server.drop(admin)
