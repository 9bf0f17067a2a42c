"""What the fault suite's own PostgreSQL cluster and RabbitMQ nodes share: a directory per test
run under ROOT (it names its owner, the pytest process), commands run as another user, and
finding what a crashed earlier run left behind.

A run's directory holds its PostgreSQL cluster's data and its RabbitMQ nodes' data, logs and
configuration. Its leftovers are removed by the next run only when its owner is gone, so two
runs side by side (two worktrees) never clean up each other."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(os.environ.get("EDFI_IM_FAULTS_DIR", "/tmp/edfi-im-faults"))
# Cluster and node names start with this (then the run id): what a crashed run may leave behind.
PREFIX = "edfiimf"
OWNER = "owner"


# Ports for the clusters' listeners: below Linux's ephemeral range (32768-60999), so that no
# outgoing connection takes one while its node or server is down for a restart; never the
# machine's broker's ports.
PORTS = range(20000, 32000)
RESERVED = {25672}
_taken: set[int] = set()


def listen_port() -> int:
    """A free port for a listener of ours (each one handed out once per run)."""
    for _ in range(1000):
        port = random.choice(PORTS)
        if port in RESERVED or port in _taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _taken.add(port)
        return port
    raise RuntimeError("no free port for a listener")


def require_root() -> None:
    if os.geteuid() != 0:
        raise RuntimeError(
            "the fault suite runs its own PostgreSQL cluster and RabbitMQ nodes as the postgres "
            "and rabbitmq users: run it as root (as .ci/run does)"
        )


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22: start time since boot


def _owner_alive(run_dir: Path) -> bool:
    try:
        pid, started = (run_dir / OWNER).read_text().split()
    except (OSError, ValueError):
        return False
    return _start_time(int(pid)) == started


def run_dir(run_id: str) -> Path:
    """This run's directory, made and marked as this process's."""
    path = ROOT / run_id
    ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    path.mkdir(mode=0o755)
    (path / OWNER).write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
    return path


def stale_runs() -> list[str]:
    """Run ids whose directory is here and whose owner is gone."""
    if not ROOT.is_dir():
        return []
    return sorted(p.name for p in ROOT.iterdir() if p.is_dir() and not _owner_alive(p))


def live_runs() -> set[str]:
    if not ROOT.is_dir():
        return set()
    return {p.name for p in ROOT.iterdir() if p.is_dir() and _owner_alive(p)}


def remove_run_dir(run_id: str) -> None:
    shutil.rmtree(ROOT / run_id, ignore_errors=True)


def run_id_of(name: str) -> str | None:
    """The run id in a cluster or node name this suite made (`edfiimf_<run>` or
    `edfiimf_<run>_<n>`), else None."""
    if not name.startswith(PREFIX + "_"):
        return None
    return name.removeprefix(PREFIX + "_").split("_", 1)[0].split("@", 1)[0]


def as_user(user: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
    """`argv` run as `user` with exactly `env` (plus PATH and LANG)."""
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    pairs = [f"{k}={v}" for k, v in {**base, **(env or {})}.items()]
    return ["runuser", "-u", user, "--", "env", "-i", *pairs, *argv]


def run(
    argv: Sequence[str], *, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=check)


def give(path: Path, user: str) -> None:
    """Make `path` (a directory this run made) and everything in it `user`'s."""
    shutil.chown(path, user, user)
    for parent, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            shutil.chown(Path(parent) / name, user, user)
