"""docker-compose.yml and the Dockerfile agree with the code: settings, commands, ports, broker.

No Docker needed: the files are read as text and YAML.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from services.cli.main import SERVICES
from services.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

PREFIX = "EDFI_IM_"
KEY_VARIABLE = "ODS_CONNECTION_STRING_ENCRYPTION_KEY"
INFRASTRUCTURE = ("rabbitmq", "postgres", "setup")
CONSUMERS = ("provisioner", "status", "scheduler")


# --- helpers -----------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def _service(name: str) -> dict[str, Any]:
    service = _compose()["services"][name]
    assert isinstance(service, dict)
    return service


_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")


def _interpolate(value: str) -> str:
    """Compose's `${NAME:-default}` as it comes out when NAME is not set in the shell."""
    return _INTERPOLATION.sub(lambda m: m.group("default") or "", value).replace("$$", "$")


def _environment(name: str) -> dict[str, str]:
    """A service's environment (anchors merged), both the mapping and the list forms."""
    raw = _service(name).get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {str(k): _interpolate("" if v is None else str(v)) for k, v in raw.items()}


def _all_variable_names() -> set[str]:
    """Every EDFI_IM_ name written in the compose file: anchors, services and comments."""
    return set(re.findall(r"\bEDFI_IM_\w+", COMPOSE_FILE.read_text()))


def _command(name: str) -> list[str]:
    command = _service(name)["command"]
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _healthcheck_text(name: str) -> str:
    test = _service(name)["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(str(part) for part in test)


def _healthcheck_port(name: str) -> int:
    match = re.search(r"http://(?:127\.0\.0\.1|localhost):(\d+)/health\b", _healthcheck_text(name))
    assert match, f"{name}: the healthcheck does not GET http://127.0.0.1:PORT/health"
    return int(match.group(1))


def _container_ports(name: str) -> set[int]:
    ports: set[int] = set()
    for entry in _service(name).get("ports", []):
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def _mounts(name: str) -> dict[str, Path]:
    """Bind mounts of a service: container path -> host path."""
    mounts: dict[str, Path] = {}
    for entry in _service(name).get("volumes", []):
        if isinstance(entry, dict):
            source, target = str(entry.get("source", "")), str(entry["target"])
        else:
            source, target = str(entry).split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = (COMPOSE_FILE.parent / source).resolve()
    return mounts


def _duration_seconds(value: str | int) -> float:
    """A compose duration such as `630s`, `10m30s` or `1h`."""
    if isinstance(value, int):
        return float(value)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"cannot read duration {value!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    instructions = []
    for line in lines:
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def _exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), "use the exec (JSON array) form"
    return [str(v) for v in value]


# --- services ------------------------------------------------------------------------------------


def test_compose_has_every_service() -> None:
    services = set(_compose()["services"])
    assert {*SERVICES, *INFRASTRUCTURE} <= services


@pytest.mark.parametrize("name", SERVICES)
def test_service_commands_match_the_cli(name: str) -> None:
    assert _command(name) == ["run", name]


def test_setup_runs_setup_once_after_the_broker_and_database_are_healthy() -> None:
    setup = _service("setup")
    assert _command("setup") == ["setup"]
    assert setup.get("restart", "no") == "no"
    depends = setup["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["rabbitmq"]["condition"] == "service_healthy"
    for name in ("postgres", "rabbitmq"):
        assert "healthcheck" in _service(name), name


@pytest.mark.parametrize("name", SERVICES)
def test_services_start_after_setup_succeeded(name: str) -> None:
    service = _service(name)
    assert service["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    assert service.get("restart") == "unless-stopped"


@pytest.mark.parametrize("name", [*SERVICES, "setup"])
def test_the_services_use_the_image_built_here(name: str) -> None:
    service = _service(name)
    build = service.get("build")
    context = build if isinstance(build, str) else (build or {}).get("context")
    assert context is not None, f"{name} does not build ./Dockerfile"
    assert (COMPOSE_FILE.parent / context).resolve() == DOCKERFILE.parent
    images = {_service(n).get("image") for n in [*SERVICES, "setup"]}
    assert len(images) == 1, f"one image for every service, not {images}"


# --- settings ------------------------------------------------------------------------------------


def test_every_edfi_im_variable_is_a_setting() -> None:
    names = _all_variable_names()
    assert names, "no EDFI_IM_ variable found in docker-compose.yml"
    unknown = sorted(n for n in names if n[len(PREFIX) :].lower() not in Settings.model_fields)
    assert not unknown, f"not fields of Settings: {unknown}"


@pytest.mark.parametrize("name", [*SERVICES, "setup"])
def test_settings_accept_each_service_environment(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in list(os.environ):
        if variable.upper().startswith(PREFIX) or variable.upper() == KEY_VARIABLE:
            monkeypatch.delenv(variable)
    environment = _environment(name)
    assert KEY_VARIABLE in environment
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)

    settings = Settings()

    assert settings.is_development
    # With the key variable empty (not set in the shell), development uses the public key.
    assert len(settings.encryption_key_bytes()) == 32
    assert urlsplit(settings.admin_database_url).hostname == "postgres"
    assert urlsplit(settings.ods_server_url).hostname == "postgres"
    assert urlsplit(settings.rabbitmq_url).hostname == "rabbitmq"


def test_the_encryption_key_is_passed_through_from_the_shell() -> None:
    raw = _compose()["x-edfi-im-environment"][KEY_VARIABLE]
    assert re.fullmatch(r"\$\{" + KEY_VARIABLE + r"(:?-[^}]*)?\}", raw), raw
    assert _interpolate(raw) == "", "no key may be written in the compose file"


# --- health checks and ports -----------------------------------------------------------------


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_has_a_healthcheck(name: str) -> None:
    assert "/health" in _healthcheck_text(name)


def test_gateway_listens_on_all_interfaces_and_is_published() -> None:
    environment = _environment("gateway")
    assert environment["EDFI_IM_GATEWAY_HOST"] == "0.0.0.0"
    port = int(
        environment.get("EDFI_IM_GATEWAY_PORT", Settings.model_fields["gateway_port"].default)
    )
    assert _healthcheck_port("gateway") == port
    assert port in _container_ports("gateway")


def test_every_published_port_is_on_loopback_only() -> None:
    """A development stack (open registration, development keys) is reachable from this machine
    only (issue 14: the gateway was published on every interface)."""
    for name, service in yaml.safe_load(COMPOSE_FILE.read_text())["services"].items():
        for entry in service.get("ports", []):
            host_ip = entry.get("host_ip") if isinstance(entry, dict) else str(entry).split(":")[0]
            assert host_ip == "127.0.0.1", (name, entry)


@pytest.mark.parametrize("name", CONSUMERS)
def test_consumer_healthchecks_use_the_health_port(name: str) -> None:
    port = int(_environment(name)["EDFI_IM_HEALTH_PORT"])
    assert _healthcheck_port(name) == port


@pytest.mark.parametrize("name", SERVICES)
def test_healthchecks_need_no_curl(name: str) -> None:
    # python:3.11-slim has neither curl nor wget.
    assert not re.search(r"\b(curl|wget)\b", _healthcheck_text(name))


def test_provisioner_gets_time_to_finish_its_operation() -> None:
    grace = _duration_seconds(_service("provisioner")["stop_grace_period"])
    environment = _environment("provisioner")
    default = Settings.model_fields["graceful_timeout_seconds"].default
    graceful = float(environment.get("EDFI_IM_GRACEFUL_TIMEOUT_SECONDS", default))
    assert grace >= 60
    assert grace > graceful, "Docker would kill the provisioner before its graceful timeout"


# --- broker --------------------------------------------------------------------------------------


def test_rabbitmq_enables_the_consistent_hash_exchange() -> None:
    mounts = _mounts("rabbitmq")
    plugins_file = mounts.get("/etc/rabbitmq/enabled_plugins")
    assert plugins_file is not None, "infra/rabbitmq/enabled_plugins is not mounted"
    assert plugins_file.is_file()
    match = re.fullmatch(r"\s*\[(.*)\]\.\s*", plugins_file.read_text(), flags=re.DOTALL)
    assert match, "enabled_plugins must be an Erlang list ending with a dot"
    plugins = {p.strip() for p in match.group(1).split(",")}
    assert {"rabbitmq_consistent_hash_exchange", "rabbitmq_management"} <= plugins


def test_rabbitmq_raises_the_consumer_timeout() -> None:
    conf = {
        target: source
        for target, source in _mounts("rabbitmq").items()
        if target.startswith("/etc/rabbitmq/conf.d/") and target.endswith(".conf")
    }
    assert any(
        re.search(r"^consumer_timeout\s*=", source.read_text(), flags=re.MULTILINE)
        for source in conf.values()
        if source.is_file()
    ), "no mounted conf.d file sets consumer_timeout"


def test_rabbitmq_url_matches_the_default_user() -> None:
    rabbitmq = _service("rabbitmq")
    environment = {str(k): str(v) for k, v in (rabbitmq.get("environment") or {}).items()}
    user = environment.get("RABBITMQ_DEFAULT_USER", "guest")
    password = environment.get("RABBITMQ_DEFAULT_PASS", "guest")
    for name in [*SERVICES, "setup"]:
        url = urlsplit(_environment(name)["EDFI_IM_RABBITMQ_URL"])
        assert (url.username, url.password) == (user, password), name
        assert url.hostname == "rabbitmq"
        assert url.port in (None, 5672)
    if user == "guest":
        # guest may connect from localhost only unless the broker's configuration says otherwise.
        inline = "".join(
            str(_compose()["configs"][entry["source"]].get("content", ""))
            for entry in rabbitmq.get("configs", [])
            if isinstance(entry, dict)
        )
        mounted = "".join(p.read_text() for p in _mounts("rabbitmq").values() if p.is_file())
        assert re.search(
            r"^loopback_users(\s*=\s*none|\.guest\s*=\s*false)\s*$",
            inline + mounted,
            flags=re.MULTILINE,
        ), "guest cannot connect from the other containers"


def test_rabbitmq_healthcheck_pings_the_node() -> None:
    assert "rabbitmq-diagnostics -q ping" in _healthcheck_text("rabbitmq")


def test_postgres_healthcheck_and_development_trust() -> None:
    assert "pg_isready" in _healthcheck_text("postgres")
    assert _service("postgres")["environment"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert "development only" in COMPOSE_FILE.read_text().lower()


# --- Dockerfile ----------------------------------------------------------------------------------


def test_dockerfile_entrypoint_runs_edfi_im() -> None:
    entrypoints = [args for keyword, args in _dockerfile_instructions() if keyword == "ENTRYPOINT"]
    assert entrypoints, "the Dockerfile has no ENTRYPOINT"
    command = _exec_form(entrypoints[-1])
    assert Path(command[0]).name == "edfi-im"


def test_dockerfile_installs_the_locked_dependencies_only() -> None:
    instructions = _dockerfile_instructions()
    syncs = [args for keyword, args in instructions if keyword == "RUN" and "uv sync" in args]
    assert syncs, "the Dockerfile does not run uv sync"
    for args in syncs:
        assert "--frozen" in args.split(), args
        assert "--no-dev" in args.split(), args
    base = next(args for keyword, args in instructions if keyword == "FROM")
    assert base.split()[0] == "python:3.11-slim"


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [args for keyword, args in _dockerfile_instructions() if keyword == "USER"]
    assert users, "the Dockerfile runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_bakes_in_no_secret() -> None:
    for keyword, args in _dockerfile_instructions():
        if keyword in ("ENV", "ARG"):
            names = re.findall(r"(?:^|\s)(\w+)(?==|\s|$)", args)
            secret = [n for n in names if re.search(r"KEY|SECRET|PASSWORD|TOKEN", n, re.I)]
            assert not secret, f"{keyword} {args}"
    ignored = set(DOCKERIGNORE.read_text().split())
    assert {".env", ".venv", ".git"} <= ignored


# --- SQL Server (optional profile) ------------------------------------------------------------


def test_sqlserver_is_an_optional_profile_the_contract_suite_can_use() -> None:
    sqlserver = _service("sqlserver")
    assert sqlserver.get("profiles") == ["sqlserver"], "a plain `docker compose up` skips it"
    assert str(sqlserver["image"]).startswith("mcr.microsoft.com/mssql/server:")
    environment = {str(k): str(v) for k, v in sqlserver["environment"].items()}
    assert environment["ACCEPT_EULA"] == "Y"
    # No password is written in the file: it must come from the shell (compose refuses without).
    password = environment["MSSQL_SA_PASSWORD"]
    assert re.fullmatch(r"\$\{MSSQL_SA_PASSWORD:\?[^}]*\}", password), password
    assert _container_ports("sqlserver") == {1433}
    assert "sqlcmd" in _healthcheck_text("sqlserver")
    # The server's backup directory is on a volume: template .bak files lie there.
    assert any("/var/opt/mssql" in str(v) for v in sqlserver["volumes"])


def test_the_services_do_not_wait_for_the_optional_sqlserver() -> None:
    for name in [*SERVICES, "setup"]:
        assert "sqlserver" not in (_service(name).get("depends_on") or {}), name
