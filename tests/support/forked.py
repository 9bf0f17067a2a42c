"""The services' processes (and `edfi-im` commands) started by forking a warm interpreter instead
of starting a new one.

Starting a service as `python -m services.cli run <service>` spends about a second of CPU on
imports (FastAPI, SQLAlchemy, FastStream, pydantic models) before it does anything; the end-to-end
tests start some sixty of them on two cores. Here a multiprocessing fork server imports the
services once per test process, and each service is a fork of it: a process of its own, with its
own pid, environment, working directory and log file, running the same `services.cli.main(["run",
<service>])` as the console script, stopped by the same signals (SIGTERM, SIGKILL, SIGSTOP). Only
the imports are shared. The start-up path itself (a new interpreter, the entry point, a
configuration error's exit code 2, the Procfile) keeps its own tests, which start real
interpreters: tests/e2e/test_startup.py, tests/e2e/test_two_stacks.py,
tests/integration/test_configuration_errors.py. `cli()` runs a command such as `edfi-im
dead-letters list` the same way, its output captured as subprocess.run captures it.

EDFI_IM_TEST_SPAWN=exec starts every service as a new interpreter again.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Protocol

# What the fork server imports once: every service's entry point and what it loads on start.
PRELOAD = [
    "services.cli.main",
    "services.cli.preflight",
    "services.runtime.messaging",
    "services.gateway.app",
    "services.provisioner.app",
    "services.status.app",
    "services.scheduler.app",
    "uvicorn",
]

ROOT = Path(__file__).resolve().parents[2]

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOAD)
# Process.start sends the process object over the fork server's socket: one start at a time
# (the fault tests restart services from a thread of their own).
_starting = threading.Lock()


class ServiceProcess(Protocol):
    """What the tests use of a service's process: subprocess.Popen's names for them."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


def _command(argv: list[str]) -> list[str]:
    """`edfi-im <argv>` as a new interpreter runs it."""
    return [sys.executable, "-m", "services.cli", *argv]


def _serve(argv: list[str], env: dict[str, str], out: str, err: str) -> None:
    """In the forked process: the environment, directory, output and arguments a new
    interpreter would have had, then the console script's main; at the end, what an
    interpreter's exit does (atexit handlers, flushed streams)."""
    for path, target in ((out, 1), (err, 2)):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(ROOT)
    sys.argv = ["edfi-im", *argv]
    # What a new interpreter makes at import and must not share with its siblings: the random
    # signing key of a gateway started without EDFI_IM_JWT_SIGNING_KEY is its own.
    from services.runtime import settings

    settings.EPHEMERAL_JWT_SIGNING_KEY = secrets.token_urlsafe(48)
    from services.cli.main import main

    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    raise SystemExit(code)


class Forked:
    """A service forked from the warm interpreter, with Popen's methods."""

    def __init__(self, argv: list[str], env: dict[str, str], out: Path, err: Path) -> None:
        self._process = _context.Process(
            target=_serve, args=(argv, env, str(out), str(err)), daemon=True
        )
        with _starting:
            self._process.start()

    @property
    def pid(self) -> int:
        pid = self._process.pid
        assert pid is not None
        return pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self._process.exitcode
        if code is None:
            raise subprocess.TimeoutExpired(["edfi-im"], timeout or 0)
        return code

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start(argv: list[str], env: dict[str, str], log: Path) -> ServiceProcess:
    """`edfi-im <argv>` as a process of its own (working directory: the repository), its output
    appended to `log`."""
    if _exec_asked(env):
        with log.open("ab") as handle:
            return subprocess.Popen(
                _command(argv),
                cwd=ROOT,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
    return Forked(argv, env, log, log)


def _exec_asked(env: dict[str, str]) -> bool:
    return env.get("EDFI_IM_TEST_SPAWN", os.environ.get("EDFI_IM_TEST_SPAWN")) == "exec"


def cli(
    argv: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`edfi-im <argv>` run to its end, as subprocess.run(..., capture_output=True, text=True)
    answers it: its exit code, standard output and standard error apart."""
    if _exec_asked(env):
        return subprocess.run(
            _command(argv),
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    with tempfile.TemporaryDirectory(prefix="edfi-im-cli-") as tmp:
        out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
        process = Forked(argv, env, out, err)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        return subprocess.CompletedProcess(
            ["edfi-im", *argv],
            code,
            out.read_text() if out.exists() else "",
            err.read_text() if err.exists() else "",
        )
