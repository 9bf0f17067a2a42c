#!/usr/bin/env bash
# Native set-up of the local PostgreSQL and RabbitMQ: start them if they are down, enable the
# broker plugins this project needs and raise the broker's consumer_timeout.
# Skips what it cannot do (e.g. a remote broker) and says so; the services then fail with a
# clear message if something is really missing.
set -euo pipefail

PG_HOST="${PGHOST:-127.0.0.1}"
CONSUMER_TIMEOUT_MS="${EDFI_IM_BROKER_CONSUMER_TIMEOUT_MS:-14400000}"  # 4 h: long restores

if command -v pg_isready >/dev/null && ! pg_isready -q -h "$PG_HOST"; then
    if command -v pg_ctlcluster >/dev/null; then
        echo "PostgreSQL is down: starting it"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
        for _ in $(seq 30); do pg_isready -q -h "$PG_HOST" && break; sleep 1; done
    else
        echo "PostgreSQL is not answering on $PG_HOST and pg_ctlcluster is not here" >&2
    fi
fi

# SQL Server's client stack, for the ODBC tests and a SQL Server ODS server or EdFi_Admin.
if ! { command -v odbcinst >/dev/null && odbcinst -q -d | grep -qxF "[FreeTDS]"; }; then
    echo "unixODBC with FreeTDS's driver is not installed (Debian: apt-get install unixodbc" \
         "tdsodbc libsqliteodbc): the SQL Server tests will fail, and SQL Server cannot be used" >&2
fi

if command -v rabbitmqctl >/dev/null; then
    if ! rabbitmqctl -q status >/dev/null 2>&1; then
        echo "RabbitMQ is down: starting it"
        rabbitmq-server -detached
        for _ in $(seq 60); do rabbitmqctl -q status >/dev/null 2>&1 && break; sleep 1; done
    fi
    rabbitmqctl -q await_startup >/dev/null 2>&1 || true
    wanted=(rabbitmq_consistent_hash_exchange rabbitmq_management)
    enabled="$(rabbitmq-plugins -q list -e -m 2>/dev/null || true)"
    missing=()
    for p in "${wanted[@]}"; do grep -qx "$p" <<<"$enabled" || missing+=("$p"); done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "Enabling RabbitMQ plugins: ${missing[*]}"
        rabbitmq-plugins -q enable "${missing[@]}"
    fi
    # consumer_timeout closes the channel of a consumer that holds an unacked message longer
    # than this; long provisioning needs more than the default 30 min. This sets it on the
    # running node; infra/rabbitmq/rabbitmq.conf sets it for good (docker compose uses it).
    rabbitmqctl -q eval "application:set_env(rabbit, consumer_timeout, ${CONSUMER_TIMEOUT_MS})." >/dev/null
    for _ in $(seq 30); do
        curl -fsS -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null 2>&1 && break
        sleep 1
    done
else
    echo "rabbitmqctl not found: assuming a RabbitMQ elsewhere with the consistent-hash and" \
         "management plugins enabled (see infra/rabbitmq/)"
fi
