# Ed-Fi ODS instance manager. `just up` runs the system; `just test` runs every test.
set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Install the locked dependencies into .venv.
sync:
    uv sync --frozen

# Make sure PostgreSQL and RabbitMQ are up, enable the broker plugins, raise consumer_timeout
# (root; as another user it only checks; EDFI_IM_SKIP_SERVICES=1 skips it).
[doc("PostgreSQL and RabbitMQ up, broker plugins and consumer_timeout (root; others: a check; EDFI_IM_SKIP_SERVICES=1 skips)")]
services:
    bash infra/scripts/services.sh

# Migrate the admin database (in development, first a copy of Ed-Fi 7.3.2's dbo tables where
# there are none), declare the broker topology, create development templates.
[doc("Migrate the admin database, declare the broker topology, create the development templates")]
setup: sync services
    EDFI_IM_ENVIRONMENT="${EDFI_IM_ENVIRONMENT:-development}" uv run --frozen edfi-im setup

# Set everything up and run gateway, provisioner, status and scheduler in the foreground (Ctrl-C
# stops all); ports: EDFI_IM_GATEWAY_PORT and EDFI_IM_{PROVISIONER,STATUS,SCHEDULER}_HEALTH_PORT.
[doc("Set up, then run gateway, provisioner, status and scheduler in the foreground (Ctrl-C stops all)")]
up: setup
    #!/usr/bin/env bash
    set -euo pipefail
    export EDFI_IM_ENVIRONMENT="${EDFI_IM_ENVIRONMENT:-development}"
    export EDFI_IM_LOG_FORMAT="${EDFI_IM_LOG_FORMAT:-console}"
    export EDFI_IM_REGISTRATION_ENABLED="${EDFI_IM_REGISTRATION_ENABLED:-true}"
    if [ -z "${ODS_CONNECTION_STRING_ENCRYPTION_KEY:-}" ]; then
        echo "ODS_CONNECTION_STRING_ENCRYPTION_KEY is not set: using the public development key."
    fi
    echo "Gateway: http://${EDFI_IM_GATEWAY_HOST:-127.0.0.1}:${EDFI_IM_GATEWAY_PORT:-8000}/docs"
    echo "Dashboard: http://${EDFI_IM_GATEWAY_HOST:-127.0.0.1}:${EDFI_IM_GATEWAY_PORT:-8000}/dashboard"
    echo "API clients: POST /connect/register, then /connect/token (README, Authentication)."
    echo "Health: provisioner :${EDFI_IM_PROVISIONER_HEALTH_PORT:-8081}, status :${EDFI_IM_STATUS_HEALTH_PORT:-8082}, scheduler :${EDFI_IM_SCHEDULER_HEALTH_PORT:-8083} (/health, /metrics)"
    exec uv run --frozen honcho -f infra/Procfile -d . start

# Run one service alone (start it twice for two replicas): gateway | provisioner | status |
# scheduler.
[doc("Run one service alone: gateway | provisioner | status | scheduler (again for a second replica)")]
run service:
    EDFI_IM_ENVIRONMENT="${EDFI_IM_ENVIRONMENT:-development}" EDFI_IM_LOG_FORMAT="${EDFI_IM_LOG_FORMAT:-console}" EDFI_IM_REGISTRATION_ENABLED="${EDFI_IM_REGISTRATION_ENABLED:-true}" uv run --frozen edfi-im run {{service}}

# Apply admin-database migrations (development: a copy of Ed-Fi's dbo tables where missing).
migrate: sync
    EDFI_IM_ENVIRONMENT="${EDFI_IM_ENVIRONMENT:-development}" uv run --frozen edfi-im migrate

# Declare the RabbitMQ topology (and rewrite infra/rabbitmq/definitions.json).
topology: sync
    uv run --frozen edfi-im topology
    uv run --frozen edfi-im topology --export

# Create the development template databases if they are missing.
templates: sync
    uv run --frozen edfi-im templates

# Dead letters: `just dead-letters list` (add `--queue status.dead` for events),
# `just dead-letters requeue <message id>` once the cause is fixed, or `discard <message id>`
# for one that is unreadable or not to be sent again.
[doc("Dead letters: list [--queue status.dead], requeue <message id> once the cause is fixed, discard <message id>")]
dead-letters *args: sync
    uv run --frozen edfi-im dead-letters {{args}}

# Export the contracts' JSON Schema (contracts/schemas/) and the consumer services' AsyncAPI
# documents (contracts/asyncapi/).
[doc("Export the contracts' JSON Schema and the consumer services' AsyncAPI documents")]
schemas: sync
    uv run --frozen edfi-im schemas

# Debian's Chromium for the dashboard's browser tests (installed when missing, as root).
browser:
    bash infra/scripts/browser.sh

# Run the tests: unit (no servers), contract (the gateway in-process, an admin database cloned
# per module), integration and end-to-end (the services as processes of their own) against the
# local PostgreSQL and RabbitMQ, and one fault smoke on servers of its own
# (tests/faults/test_smoke.py); `just faults` runs them all. Two pytest-xdist workers, a test file
# each at a time, longest first (every worker has its own admin databases, vhost and name prefix):
# about 3 minutes on 2 cores (README, Development); `uv run pytest <paths>` runs tests in one
# process.
# The dashboard's browser tests keep their screenshots in test-artifacts/screenshots/.
[doc("Run the tests (unit, contract, integration, end-to-end, one fault smoke) on the local PostgreSQL and RabbitMQ")]
test *args: sync services browser
    uv run --frozen edfi-im templates
    uv run --frozen pytest -n 2 --dist loadfile --no-loadscope-reorder {{args}}

# SQL Server's contract suite (level 4) against the server EDFI_IM_TEST_SQLSERVER_URL names,
# e.g. `docker compose --profile sqlserver up -d sqlserver` and
# EDFI_IM_TEST_SQLSERVER_URL='mssql://sa:<MSSQL_SA_PASSWORD>@127.0.0.1:1433/master?TrustServerCertificate=yes'.
# Without it, it says so and fails: a suite that did not run never passes.
[doc("SQL Server's contract suite against EDFI_IM_TEST_SQLSERVER_URL (fails when it is not set)")]
test-sqlserver *args: sync
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -z "${EDFI_IM_TEST_SQLSERVER_URL:-}" ]; then
        echo "SQL Server contract suite NOT RUN: set EDFI_IM_TEST_SQLSERVER_URL (README, SQL Server)" >&2
        exit 1
    fi
    uv run --frozen pytest tests/sqlserver -rs {{args}}

# The fault suite (tests/faults/), hermetic: it starts its own PostgreSQL cluster and three-node
# RabbitMQ cluster (as root: nodes run as the rabbitmq user), faults only those and the services,
# and removes them at the end. Prints one `chaos:` summary line.
[doc("The fault suite on a PostgreSQL and a RabbitMQ cluster of its own (root)")]
faults *args: sync
    uv run --frozen pytest tests/faults -q {{args}}

# The chaos test alone, longer (CHAOS_SECONDS, default 300), hermetic like `just faults`.
chaos seconds="300": sync
    CHAOS_SECONDS={{seconds}} uv run --frozen pytest tests/faults/test_chaos.py -q

# Benchmarks (not tests): instances (clone concurrency sweep, clone overhead, bulk, sustained
# pipeline, paging, accept path; each against its hand-made baseline, each ratio of issue 18
# beside its goal), then scheduler fire lateness. Tables printed; JSON and markdown in
# bench/results/. About 13 minutes; `just bench-quick` about 5.
[doc("Benchmarks: clone concurrency, one create, bulk, pipeline, paging, accept path (each ratio beside its goal), then scheduler fire lateness")]
bench: bench-instances bench-scheduler

# The same, shorter: fewer runs, 20 s offers, one size of schedules.
bench-quick: sync services
    uv run --frozen edfi-im templates
    uv run --frozen python -m bench.instances --quick
    uv run --frozen python -m bench.scheduler --sizes 1000 --period 10

# Where a create's time goes (every statement logged with its duration, py-spy on each service):
# bench/profile.py, as root on the machine's own PostgreSQL (it reads the server's log).
bench-profile *args: sync services
    uv run --frozen edfi-im templates
    uv run --frozen python -m bench.profile {{args}}

# This checkout against an earlier commit, in alternating rounds (one create's overhead, a bulk's
# CPU per create): `just bench-compare --base <commit> [--rounds 8]`. About 40 s a round.
bench-compare *args: sync services
    uv run --frozen python -m bench.compare {{args}}

# The instance benchmarks alone (`just bench-instances --runs 3` …; see --help).
bench-instances *args: sync services
    uv run --frozen edfi-im templates
    uv run --frozen python -m bench.instances {{args}}

# Scheduler fire lateness with 1,000 and 10,000 active schedules.
bench-scheduler *args: sync services
    uv run --frozen python -m bench.scheduler {{args}}

# ruff (lint + format check), mypy --strict, and the import floors (lint-imports).
lint: sync
    uv run --frozen ruff check .
    uv run --frozen ruff format --check .
    uv run --frozen mypy
    uv run --frozen lint-imports --no-cache

# Format the code.
fmt: sync
    uv run --frozen ruff format .
    uv run --frozen ruff check --fix .

# Follow the logs of the docker compose stack.
logs:
    docker compose logs -f
