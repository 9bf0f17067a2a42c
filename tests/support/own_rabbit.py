"""A three-node RabbitMQ cluster of the test run's own, beside the machine's broker.

Each node runs as the rabbitmq user (HOME=/var/lib/rabbitmq: the shared Erlang cookie) with a
node name, AMQP, management and distribution ports, data, logs, configuration and plugins file
of its own under the run's directory; `rabbitmqctl join_cluster` makes them one cluster. Quorum
queues get a replica on every node and their leaders are spread over the nodes
(`queue_leader_locator = balanced`), so losing a node moves leaders. The machine's broker
(5672/15672/25672) is never stopped, restarted or reconfigured; epmd (4369) is shared.

Faults: kill -9 of one node's beam process (then a restart), a restart of the whole cluster,
consumer_timeout on these nodes."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support import hermetic
from tests.support.rabbit import AUTH, Broker

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
RABBITMQ_HOME = "/var/lib/rabbitmq"  # the rabbitmq user's home: its .erlang.cookie
PLUGINS = "[rabbitmq_consistent_hash_exchange,rabbitmq_management].\n"
PROJECT_CONSUMER_TIMEOUT_MS = 14_400_000  # infra/rabbitmq/rabbitmq.conf
# Channels check consumer timeouts on this tick (RabbitMQ's default: every 60 s).
CHANNEL_TICK_MS = 2_000


@dataclass
class Node:
    index: int
    name: str
    dir: Path
    amqp_port: int = field(default_factory=hermetic.listen_port)
    management_port: int = field(default_factory=hermetic.listen_port)
    dist_port: int = field(default_factory=hermetic.listen_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def broker(self) -> Broker:
        return Broker(
            management=f"http://127.0.0.1:{self.management_port}/api",
            amqp_port=self.amqp_port,
        )

    @property
    def pid_file(self) -> Path:
        return self.dir / "pid"

    def env(self) -> dict[str, str]:
        return {
            "HOME": RABBITMQ_HOME,
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def write_config(self, consumer_timeout_ms: int) -> None:
        self.dir.mkdir(parents=True)
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.amqp_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
            f"management.tcp.port = {self.management_port}\n"
            f"consumer_timeout = {consumer_timeout_ms}\n"
            "queue_leader_locator = balanced\n"
        )
        (self.dir / "advanced.config").write_text(
            f"[{{rabbit, [{{channel_tick_interval, {CHANNEL_TICK_MS}}}]}}].\n"
        )
        (self.dir / "enabled_plugins").write_text(PLUGINS)
        (self.dir / "rabbitmq-env.conf").write_text("# this node's settings are in its env\n")
        hermetic.give(self.dir, "rabbitmq")

    def beam_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _is_node(pid, self.name) else None

    def log_tail(self, chars: int = 3000) -> str:
        parts = []
        for path in [self.dir / "stdout.log", *sorted((self.dir / "log").glob("*.log"))]:
            with contextlib.suppress(OSError):
                parts.append(f"--- {path.name}\n{path.read_text()[-chars:]}")
        return "\n".join(parts)


def _is_node(pid: int, name: str) -> bool:
    """Whether `pid` is the beam process of node `name` (its environment names it)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"beam" in cmdline and f"RABBITMQ_NODENAME={name}".encode() in environ


def _ctl_argv(node: Node, *args: str) -> list[str]:
    env = {
        "HOME": RABBITMQ_HOME,
        "RABBITMQ_CONF_ENV_FILE": str(node.dir / "rabbitmq-env.conf"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }
    return hermetic.as_user(
        "rabbitmq", [str(RABBITMQ_BIN / "rabbitmqctl"), "-q", "-n", node.name, *args], env
    )


def _each(nodes: Iterable[Node], action: Callable[[Node], None]) -> None:
    """`action` on every node at once; the first error is raised."""
    errors: list[BaseException] = []

    def go(node: Node) -> None:
        try:
            action(node)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _epmd_names() -> list[str]:
    try:
        out = hermetic.run(["epmd", "-names"], check=False, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split()[1] for line in out.splitlines() if line.startswith("name ")]


def clean_leftovers() -> list[str]:
    """Stop the nodes of earlier runs that are gone (crashed); the node names stopped."""
    live = hermetic.live_runs()
    stopped = []
    for run_id in hermetic.stale_runs():
        for pid_file in (hermetic.ROOT / run_id / "rabbitmq").glob("*/pid"):
            name = f"{hermetic.PREFIX}_{run_id}_{pid_file.parent.name[1:]}@localhost"
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text().strip())
                if _is_node(pid, name):
                    os.kill(pid, signal.SIGKILL)
                    stopped.append(name)
    # Nodes still registered with epmd whose run is gone (their directory removed already).
    for short in _epmd_names():
        owner = hermetic.run_id_of(short)
        if owner is not None and owner not in live:
            orphan = Node(0, f"{short}@localhost", hermetic.ROOT / "none", 0, 0, 0)
            hermetic.run(_ctl_argv(orphan, "stop"), check=False, timeout=60)
            stopped.append(orphan.name)
    return stopped


class OwnRabbit:
    def __init__(self, run_dir: Path, run_id: str, *, nodes: int = 3) -> None:
        self.dir = run_dir / "rabbitmq"
        self.nodes = [
            Node(i, f"{hermetic.PREFIX}_{run_id}_{i}@localhost", self.dir / f"n{i}")
            for i in range(1, nodes + 1)
        ]
        self._stopped = False

    # --- where ----------------------------------------------------------------------------
    def broker(self, node: int = 1) -> Broker:
        """Node `node`'s management API and AMQP port (the services use node 1)."""
        return self.nodes[node - 1].broker

    def amqp_url(self, vhost: str = "/", node: int = 1) -> str:
        return self.broker(node).amqp_url(vhost)

    def management_url(self, node: int = 1) -> str:
        return self.broker(node).management

    # --- life -----------------------------------------------------------------------------
    def start(self, consumer_timeout_ms: int = PROJECT_CONSUMER_TIMEOUT_MS) -> None:
        """Start every node, then join nodes 2… to node 1."""
        hermetic.require_root()
        atexit.register(self.stop)
        self.dir.mkdir()
        for node in self.nodes:
            node.write_config(consumer_timeout_ms)
        _each(self.nodes, self.start_node)
        first, *others = self.nodes
        # One at a time: two nodes joining at once can fail on Mnesia's schema change (seen
        # once: `start_app` of node 3 failed with a mnesia_app badmatch while node 2 joined).
        for node in others:
            self._join(node, first)
        self.wait_cluster()

    def _join(self, node: Node, to: Node) -> None:
        self.ctl(node, "stop_app")
        self.ctl(node, "join_cluster", to.name)
        self.ctl(node, "start_app")  # returns once the node runs again

    def ctl(self, node: Node, *args: str, timeout: float = 120) -> str:
        result = hermetic.run(_ctl_argv(node, *args), check=False, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl -n {node.name} {' '.join(args)}: {result.returncode}\n"
                f"{result.stdout}{result.stderr}"
            )
        return result.stdout

    def start_node(self, node: Node, timeout: float = 120) -> None:
        """Start `node` (a fresh one, or one that was stopped or killed) and wait until it runs."""
        if node.beam_pid() is not None:
            raise RuntimeError(f"{node.name} is already running")
        with (node.dir / "stdout.log").open("ab") as out:
            node.proc = subprocess.Popen(
                hermetic.as_user("rabbitmq", [str(RABBITMQ_BIN / "rabbitmq-server")], node.env()),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if node.proc.poll() is not None:
                raise RuntimeError(f"{node.name} exited at start:\n{node.log_tail()}")
            result = hermetic.run(
                _ctl_argv(node, "await_startup", "--timeout", "60"), check=False, timeout=90
            )
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{node.name} not up after {timeout}s:\n{node.log_tail()}")
            time.sleep(0.5)

    def wait_cluster(self, timeout: float = 120) -> None:
        """Until node 1's management API sees every node running."""
        deadline = time.monotonic() + timeout
        names = {n.name for n in self.nodes}
        running: set[str] = set()
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{self.management_url()}/nodes", auth=AUTH, timeout=5)
                if r.status_code == 200:
                    running = {n["name"] for n in r.json() if n.get("running")}
                    if running >= names:
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"cluster not formed after {timeout}s: running {sorted(running)}")

    def _reap(self, node: Node, timeout: float = 60) -> None:
        if node.proc is not None:
            try:
                node.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(node.proc.pid, signal.SIGKILL)
                node.proc.wait()
            node.proc = None

    # --- faults ---------------------------------------------------------------------------
    def kill_node(self, index: int) -> None:
        """kill -9 of node `index`'s beam process (it stays down until `restart_node`)."""
        node = self.nodes[index - 1]
        pid = node.beam_pid()
        if pid is None:
            raise RuntimeError(f"{node.name} is not running")
        os.kill(pid, signal.SIGKILL)
        self._reap(node)

    def restart_node(self, index: int) -> None:
        node = self.nodes[index - 1]
        self.start_node(node)
        self.wait_cluster()

    def lose_node(self, index: int, down: float = 1.0) -> None:
        """Node loss: kill -9 of one node's beam process, `down` seconds, a restart."""
        self.kill_node(index)
        time.sleep(down)
        self.restart_node(index)

    def restart(self, down: float = 1.0) -> None:
        """The broker restart: every node stopped, then all started again together."""

        def stop(node: Node) -> None:
            self.ctl(node, "stop")
            self._reap(node)

        _each(self.nodes, stop)
        time.sleep(down)
        _each(self.nodes, self.start_node)
        self.wait_cluster()

    def set_consumer_timeout(self, ms: int) -> None:
        """consumer_timeout on every node (channels read it when they open)."""
        for node in self.nodes:
            self.ctl(node, "eval", f"application:set_env(rabbit, consumer_timeout, {ms}).")

    # --- end ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Every node killed (their data goes with the run's directory)."""
        if self._stopped:
            return
        self._stopped = True
        for node in self.nodes:
            pid = node.beam_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if node.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.proc.pid, signal.SIGKILL)
                node.proc.wait()
                node.proc = None
