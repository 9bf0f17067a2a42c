"""The fault suite's own servers: a PostgreSQL cluster and a three-node RabbitMQ cluster,
started together for the test run and removed at its end (tests/faults/conftest.py)."""

from __future__ import annotations

import atexit
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import hermetic, own_postgres, own_rabbit
from tests.support.cluster import cluster
from tests.support.own_postgres import OwnPostgres
from tests.support.own_rabbit import OwnRabbit
from tests.support.pg import Server
from tests.support.rabbit import Broker
from tests.support.stack import Stack


@dataclass
class Own:
    pg: OwnPostgres
    rabbit: OwnRabbit
    started_in: float = 0.0  # seconds both took to start

    @property
    def broker(self) -> Broker:
        """Node 1 of the cluster: the node the services connect to."""
        return self.rabbit.broker(1)

    @property
    def server(self) -> Server:
        return self.pg.server

    def cluster(
        self, settings_env: dict[str, str], log_dir: Path, **kwargs: Any
    ) -> AbstractContextManager[Stack]:
        """tests/support/cluster.py's system (its own vhost and admin database) on these."""
        return cluster(settings_env, log_dir, broker=self.broker, pg_server=self.server, **kwargs)


def clean_leftovers() -> None:
    """What crashed earlier runs left: their PostgreSQL clusters, RabbitMQ nodes, directories."""
    own_postgres.clean_leftovers()
    own_rabbit.clean_leftovers()
    for run_id in hermetic.stale_runs():
        hermetic.remove_run_dir(run_id)


def _both(*actions: Callable[[], None]) -> None:
    errors: list[BaseException] = []

    def go(action: Callable[[], None]) -> None:
        try:
            action()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(a,)) for a in actions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _terminate_as_interrupt() -> None:
    """SIGTERM (a CI timeout, `kill`) ends the run like Ctrl-C, so the servers are removed; a
    second SIGTERM kills at once (the next run removes what is left)."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        return  # someone else's handler: leave it

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


@contextmanager
def own_servers(run_id: str) -> Iterator[Own]:
    """Both servers of this run, started together; removed when the block ends, at exit, or
    (after a crash) by the next run."""
    hermetic.require_root()
    _terminate_as_interrupt()
    clean_leftovers()
    run_dir = hermetic.run_dir(run_id)
    atexit.register(hermetic.remove_run_dir, run_id)
    pg, rabbit = OwnPostgres(run_dir, run_id), OwnRabbit(run_dir, run_id)

    def start_pg() -> None:
        pg.create()
        pg.ensure_templates()

    began = time.monotonic()
    try:
        _both(start_pg, rabbit.start)
        yield Own(pg, rabbit, started_in=time.monotonic() - began)
    finally:
        rabbit.stop()
        pg.drop()
        hermetic.remove_run_dir(run_id)
