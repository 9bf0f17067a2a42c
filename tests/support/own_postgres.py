"""A PostgreSQL cluster of the test run's own, on a free port, for the fault suite.

Made with Debian's tools (`pg_createcluster` with trust auth, `pg_ctlcluster`, `pg_dropcluster
--stop`), its data in the run's directory. The suite restarts it and ends connections on it; the
machine's own PostgreSQL is never touched. Removed at the end of the run (and at exit, and by
the next run if this one crashed)."""

from __future__ import annotations

import atexit
import shutil
import time
from pathlib import Path

import psycopg

from tests.support import hermetic
from tests.support.pg import Server

# The development templates the services clone (services.runtime.settings.DEFAULT_TEMPLATES).
TEMPLATES = {"Minimal": "EdFi_Ods_Minimal_Template", "Sample": "EdFi_Ods_Populated_Template"}
SETTINGS = {
    # Crash-safe enough for a test cluster (a killed server loses nothing the OS has): a
    # restart must not lose a committed transaction, so synchronous_commit stays on.
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


def installed_version() -> str:
    versions = [p.name for p in Path("/usr/lib/postgresql").glob("*") if (p / "bin").is_dir()]
    if not versions:
        raise RuntimeError(
            "no PostgreSQL server under /usr/lib/postgresql (apt install postgresql)"
        )
    return max(versions, key=lambda v: float(v))


def _clusters() -> list[tuple[str, str, str]]:
    """(version, name, status) of every cluster pg_lsclusters knows."""
    out = hermetic.run(["pg_lsclusters", "--no-header"]).stdout
    return [(f[0], f[1], f[3]) for f in (line.split() for line in out.splitlines()) if len(f) > 3]


def _drop_cluster(version: str, name: str) -> None:
    hermetic.run(["pg_dropcluster", "--stop", version, name], check=False, timeout=60)
    # pg_dropcluster leaves the configuration directory when it holds something of ours.
    shutil.rmtree(Path("/etc/postgresql") / version / name, ignore_errors=True)


def clean_leftovers() -> list[str]:
    """Drop clusters of earlier runs that are gone (crashed); the names dropped."""
    live = hermetic.live_runs()
    dropped = []
    for version, name, _ in _clusters():
        run_id = hermetic.run_id_of(name)
        if run_id is not None and run_id not in live:
            _drop_cluster(version, name)
            dropped.append(name)
    return dropped


class OwnPostgres:
    def __init__(self, run_dir: Path, run_id: str) -> None:
        self.version = installed_version()
        self.name = f"{hermetic.PREFIX}_{run_id}"
        self.port = hermetic.listen_port()
        self.dir = run_dir / "postgresql"
        self.server = Server(f"postgresql://postgres@127.0.0.1:{self.port}/postgres")
        self._dropped = False

    @property
    def url(self) -> str:
        """The maintenance database's URL (the services' ODS server URL)."""
        return self.server.url

    def database_url(self, name: str) -> str:
        return self.server.database_url(name)

    def create(self) -> None:
        hermetic.require_root()
        atexit.register(self.drop)
        options = [a for k, v in SETTINGS.items() for a in ("-o", f"{k}={v}")]
        hermetic.run(
            [
                "pg_createcluster",
                self.version,
                self.name,
                "--port",
                str(self.port),
                "--datadir",
                str(self.dir / "data"),
                "--logfile",
                str(self.dir / "postgresql.log"),
                "--start-conf",
                "manual",
                *options,
                "--",
                "--auth=trust",
                "--no-sync",
            ],
            timeout=120,
        )
        self.start()

    def _ctl(self, action: str, *args: str) -> None:
        hermetic.run(["pg_ctlcluster", self.version, self.name, action, *args], timeout=120)

    def start(self) -> None:
        self._ctl("start")
        self.wait_ready()

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends sessions and shuts down cleanly; `immediate` is a crash (recovery at
        the next start)."""
        self._ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        self._ctl("restart", "-m", mode)
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def terminate_connections(self, databases: list[str] | None = None) -> int:
        """End client sessions on this cluster (of `databases` only, when given), not our own;
        how many were ended."""
        query = (
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        params: tuple[object, ...] = ()
        if databases is not None:
            query += " AND datname = ANY(%s)"
            params = (databases,)
        with psycopg.connect(self.url, autocommit=True) as c:
            row = c.execute(query, params).fetchone()
        return int(row[0]) if row else 0

    def ensure_templates(self) -> list[str]:
        from services.runtime.templates import ensure_templates

        return ensure_templates(self.url, TEMPLATES)

    def drop(self) -> None:
        if self._dropped:
            return
        self._dropped = True
        _drop_cluster(self.version, self.name)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return (self.dir / "postgresql.log").read_text()[-chars:]
        except OSError:
            return ""
