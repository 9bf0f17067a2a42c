"""The services as real processes of their own (forked from a warm interpreter: tests/support/
forked.py), for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiormq
import httpx

from services.runtime.topology import MAINTENANCE_QUEUE, STATUS_QUEUE, shard_queue
from tests.support import forked, pg, rabbit
from tests.support.forked import ROOT as ROOT  # where the tests run edfi-im from

FULL_ACCESS = "edfi_admin_api/full_access"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Stack:
    env: dict[str, str]
    log_dir: Path
    vhost: str
    shard_count: int
    # Where the stack's broker and ODS server are: the machine's own, or the fault suite's.
    broker: rabbit.Broker = rabbit.LOCAL
    pg_server: pg.Server = pg.LOCAL
    port: int = field(default_factory=free_port)
    procs: dict[str, forked.ServiceProcess] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)
    log_offsets: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    health_ports: dict[str, int] = field(default_factory=dict)
    # How each name was last started (service, extra environment), for restart().
    started: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def new_token(self, scope: str = FULL_ACCESS, tenants: str | None = None) -> str:
        """The access token of a client registered now (registration is enabled in the tests'
        settings), limited to `tenants` (comma-separated) if given."""
        client_id = f"tests-{uuid.uuid4().hex[:12]}"
        secret = f"Tests-{uuid.uuid4().hex}-Secret!"
        form = {"ClientId": client_id, "ClientSecret": secret, "DisplayName": "tests"}
        if tenants is not None:
            form["Tenants"] = tenants
        httpx.post(f"{self.url}/connect/register", data=form, timeout=10).raise_for_status()
        r = httpx.post(
            f"{self.url}/connect/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
                "scope": scope,
            },
            timeout=10,
        )
        r.raise_for_status()
        token: str = r.json()["access_token"]
        return token

    def token(self, scope: str = FULL_ACCESS) -> str:
        """An access token of a client registered for this stack, one per scope."""
        if scope not in self.tokens:
            self.tokens[scope] = self.new_token(scope)
        return self.tokens[scope]

    def client(
        self,
        scope: str = FULL_ACCESS,
        timeout: float = 10,
        tenant: str | None = None,
    ) -> httpx.Client:
        """An HTTP client of the gateway that sends a bearer token (and a `tenant` header)."""
        headers = {"Authorization": f"Bearer {self.token(scope)}"}
        if tenant is not None:
            headers["tenant"] = tenant
        return httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, name: str, service: str | None = None, **extra_env: str) -> None:
        env = {**os.environ, **self.env, "EDFI_IM_GATEWAY_PORT": str(self.port), **extra_env}
        if "EDFI_IM_HEALTH_PORT" in extra_env:
            self.health_ports[name] = int(extra_env["EDFI_IM_HEALTH_PORT"])
        log = self.log(name)
        self.services[name] = service or name
        self.started[name] = (service or name, dict(extra_env))
        log.touch()
        self.log_offsets[name] = log.stat().st_size
        self.procs[name] = forked.start(["run", service or name], env, log)

    def restart(self, name: str) -> None:
        """Start `name` again as it was last started (the same service, health port and
        settings): the stack is shared by the e2e files of a test process, so a test that stops
        one of its services leaves it as it found it."""
        service, extra_env = self.started[name]
        self.start(name, service, **extra_env)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`edfi-im <args>` with this stack's settings, run to its end (output captured)."""
        return forked.cli(list(args), {**os.environ, **self.env}, timeout)

    def start_gateway(self, name: str, timeout: float = 30, **extra_env: str) -> str:
        """Another gateway process on a free port of its own (the stack's settings, plus
        `extra_env`); its address once it answers /ready."""
        port = free_port()
        self.start(name, "gateway", EDFI_IM_GATEWAY_PORT=str(port), **extra_env)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, self.log(name).read_text()[-2000:]
            time.sleep(0.2)

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        proc = self.procs.pop(name)
        self.services.pop(name, None)
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def stop_all(self, timeout: float = 30) -> None:
        """Tell every process to stop at once, then wait for each (their graceful shutdowns
        overlap: nothing of one waits for another, all they share is the broker and the
        database)."""
        procs = [(name, self.procs.pop(name)) for name in list(self.procs)]
        self.services.clear()
        for _, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _, proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{self.log(name).read_text()[-3000:]}")
            if self._ready():
                return
            time.sleep(0.3)
        logs = "\n".join(f"--- {n}\n{self.log(n).read_text()[-2000:]}" for n in self.procs)
        raise TimeoutError(f"stack not ready after {timeout}s\n{logs}")

    def logged_since_start(self, name: str, event: str) -> bool:
        """Whether the process has logged `event` since it was (re)started."""
        with self.log(name).open("rb") as f:
            f.seek(self.log_offsets.get(name, 0))
            return f'"{event}"'.encode() in f.read()

    def _ready(self) -> bool:
        schedulers = [n for n, service in self.services.items() if service == "scheduler"]
        if not all(
            self.logged_since_start(n, "scheduler started") for n in schedulers if n in self.procs
        ):
            return False
        try:
            if httpx.get(f"{self.url}/ready", timeout=2).status_code != 200:
                return False
            queues = [STATUS_QUEUE, *(shard_queue(k) for k in range(self.shard_count))]
            if schedulers:
                queues.append(MAINTENANCE_QUEUE)
            counts = self.broker.consumers(self.vhost, queues)
            return all(counts[name] >= 1 for name in queues)
        except (httpx.HTTPError, KeyError, OSError, TimeoutError, aiormq.exceptions.AMQPError):
            return False
