#!/usr/bin/env bash
# Native set-up of the local PostgreSQL and RabbitMQ: start them if they are down, enable the
# broker plugins this project needs and raise the broker's consumer_timeout.
#
# Rights: starting PostgreSQL or RabbitMQ, enabling plugins and setting consumer_timeout need
# root (rabbitmqctl reads the broker's Erlang cookie). As another user the script only checks,
# through the ports and the management API, that what is needed is there, and says what a root
# user must do if it is not (exit 1). EDFI_IM_SKIP_SERVICES=1 skips it all, for services that
# run elsewhere or that someone else looks after.
set -euo pipefail

if [ "${EDFI_IM_SKIP_SERVICES:-}" = 1 ]; then
    echo "EDFI_IM_SKIP_SERVICES=1: not checking PostgreSQL and RabbitMQ (the services say so" \
         "when they cannot reach them)"
    exit 0
fi

PG_HOST="${PGHOST:-127.0.0.1}"
AMQP_PORT="${RABBITMQ_NODE_PORT:-5672}"
MANAGEMENT="${EDFI_IM_RABBITMQ_MANAGEMENT_URL:-http://guest:guest@127.0.0.1:15672}"
CONSUMER_TIMEOUT_MS="${EDFI_IM_BROKER_CONSUMER_TIMEOUT_MS:-14400000}"  # 4 h: long restores
ROOT=no
[ "$(id -u)" = 0 ] && ROOT=yes

needs_root() {  # what to do, then exit 1
    echo "services: $*" >&2
    echo "services: as root: sudo just services; or, if your PostgreSQL and RabbitMQ are set" \
         "up already, EDFI_IM_SKIP_SERVICES=1 just up (README, Run it)" >&2
    exit 1
}

if command -v pg_isready >/dev/null && ! pg_isready -q -h "$PG_HOST"; then
    if [ "$ROOT" = no ]; then
        needs_root "PostgreSQL is not answering on $PG_HOST, and starting it needs root"
    elif command -v pg_ctlcluster >/dev/null; then
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

broker_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$AMQP_PORT") 2>/dev/null; }

if ! command -v rabbitmqctl >/dev/null; then
    echo "rabbitmqctl not found: assuming a RabbitMQ elsewhere with the consistent-hash and" \
         "management plugins enabled (see infra/rabbitmq/)"
elif [ "$ROOT" = no ]; then
    # rabbitmqctl cannot be used (the Erlang cookie is the broker's): check from outside.
    broker_answers || needs_root "RabbitMQ is not answering on 127.0.0.1:$AMQP_PORT, and" \
        "starting it needs root"
    overview="$(curl -fsS "$MANAGEMENT/api/overview" 2>/dev/null)" \
        || needs_root "RabbitMQ's management API does not answer at ${MANAGEMENT#*@}: enable" \
            "the rabbitmq_management plugin (rabbitmq-plugins enable rabbitmq_management)"
    grep -q '"x-consistent-hash"' <<<"$overview" \
        || needs_root "RabbitMQ has no x-consistent-hash exchange type: enable the plugin" \
            "(rabbitmq-plugins enable rabbitmq_consistent_hash_exchange)"
    echo "RabbitMQ answers with the plugins this project needs; its consumer_timeout is left as" \
         "it is (raising it needs root: for restores over 30 min set it in the broker's" \
         "rabbitmq.conf as infra/rabbitmq/rabbitmq.conf does)"
else
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
        curl -fsS "$MANAGEMENT/api/overview" >/dev/null 2>&1 && break
        sleep 1
    done
fi
