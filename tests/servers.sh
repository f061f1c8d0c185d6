#!/usr/bin/env bash
# Sourced by tests/run.sh and tests/chaos.sh (from the repository's root, as root): installs the real
# servers the tests need from Debian's packages when they are missing, starts RabbitMQ and PostgreSQL
# unless they already run, and exports where they are. Servers started here are stopped when the
# sourcing script exits, unless BUSFLOW_KEEP_SERVICES=1.
ROOT=$PWD
STATE=${BUSFLOW_SERVICES_DIR:-/tmp/busflow-services}
mkdir -p "$STATE"
started=()

log() { printf '[tests/run.sh] %s\n' "$*"; }

need_packages=()
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_packages+=(rabbitmq-server)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need_packages+=(postgresql)
# The dashboard tests drive Debian's Chromium through Playwright (BUSFLOW_CHROMIUM).
[ -x /usr/bin/chromium ] || need_packages+=(chromium)
# The host's build builds the TypeScript client (clients/typescript) for the dashboard, and its tests run on Node.js.
command -v node >/dev/null && command -v npm >/dev/null || need_packages+=(nodejs npm)
if [ ${#need_packages[@]} -gt 0 ]; then
  log "installing ${need_packages[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  log "Node.js $(node --version) is too old: the TypeScript client and its tests need Node.js 20 or later (https://nodejs.org/en/download)"
  exit 1
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# RabbitMQ with the management plugin (tests create a virtual host per test class through it).
RMQ=$STATE/rabbitmq
export BUSFLOW_RABBITMQ_PORT=${BUSFLOW_RABBITMQ_PORT:-5672}
export BUSFLOW_RABBITMQ_MANAGEMENT_PORT=15672  # the management plugin's default
rmq_env() {
  env HOME=$RMQ RABBITMQ_MNESIA_BASE=$RMQ/mnesia RABBITMQ_LOG_BASE=$RMQ/log RABBITMQ_NODENAME=busflow@localhost \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$BUSFLOW_RABBITMQ_PORT RABBITMQ_DIST_PORT=25672 \
    RABBITMQ_ENABLED_PLUGINS_FILE=$RMQ/enabled_plugins RABBITMQ_PID_FILE=$RMQ/rabbit.pid "$@"
}
if ! port_open "$BUSFLOW_RABBITMQ_PORT"; then
  log "starting RabbitMQ on 127.0.0.1:$BUSFLOW_RABBITMQ_PORT"
  mkdir -p "$RMQ"
  echo '[rabbitmq_management].' > "$RMQ/enabled_plugins"
  rmq_env /usr/lib/rabbitmq/bin/rabbitmq-server -detached
  rmq_env /usr/lib/rabbitmq/bin/rabbitmqctl wait --timeout 90 "$RMQ/rabbit.pid" >/dev/null
  started+=(rabbitmq)
fi
for _ in $(seq 1 60); do port_open "$BUSFLOW_RABBITMQ_MANAGEMENT_PORT" && break; sleep 0.5; done
port_open "$BUSFLOW_RABBITMQ_MANAGEMENT_PORT" || { log "RabbitMQ's management API did not open on $BUSFLOW_RABBITMQ_MANAGEMENT_PORT"; exit 1; }
# Lets the broker-restart tests stop and start this very broker.
export BUSFLOW_RABBITMQCTL="$ROOT/tests/rabbitmqctl.sh"
export BUSFLOW_RABBITMQ_DIR=$RMQ

# PostgreSQL 15 on its own port and socket folder, trusting local connections.
PG=$STATE/postgres
export BUSFLOW_POSTGRES_PORT=${BUSFLOW_POSTGRES_PORT:-55432}
# Lets the chaos runner stop this very database hard and start it again (not a server on the port
# that some other folder holds: then the restart fault fails, saying so).
export BUSFLOW_POSTGRES_DIR=$PG
export BUSFLOW_POSTGRESCTL="$ROOT/tests/postgresctl.sh"
if ! port_open "$BUSFLOW_POSTGRES_PORT"; then
  log "starting PostgreSQL on 127.0.0.1:$BUSFLOW_POSTGRES_PORT"
  mkdir -p "$PG"
  chown postgres: "$PG"
  chmod 755 "$STATE"
  [ -f "$PG/data/PG_VERSION" ] || su postgres -c "/usr/lib/postgresql/15/bin/initdb -D $PG/data -U postgres --auth=trust -E UTF8" >/dev/null
  "$BUSFLOW_POSTGRESCTL" start
  started+=(postgres)
fi

# The chaos runner's 3-node RabbitMQ cluster (tests/rabbitmq-cluster.sh), beside the single broker;
# started only by the scripts that run the chaos runner. Its settings for the runner: chaos_env.
start_rabbitmq_cluster() {
  if port_open 5681 && port_open 5682 && port_open 5683; then return; fi
  log "starting a 3-node RabbitMQ cluster on 127.0.0.1:5681-5683"
  "$ROOT/tests/rabbitmq-cluster.sh" start
  started+=(rabbitmq-cluster)
}
chaos_env() { "$ROOT/tests/rabbitmq-cluster.sh" env; }

stop_started() {
  [ "${BUSFLOW_KEEP_SERVICES:-0}" = 1 ] && return
  for s in "${started[@]}"; do
    case $s in
      rabbitmq) rmq_env /usr/lib/rabbitmq/bin/rabbitmqctl stop "$RMQ/rabbit.pid" >/dev/null 2>&1 || true ;;
      postgres) "$BUSFLOW_POSTGRESCTL" stop >/dev/null 2>&1 || true ;;
      rabbitmq-cluster) "$ROOT/tests/rabbitmq-cluster.sh" stop >/dev/null 2>&1 || true ;;
    esac
  done
}
trap stop_started EXIT

export BUSFLOW_TEST_RABBITMQ="amqp://guest:guest@127.0.0.1:$BUSFLOW_RABBITMQ_PORT/"
export BUSFLOW_TEST_POSTGRES="Host=127.0.0.1;Port=$BUSFLOW_POSTGRES_PORT;Username=postgres"
export BUSFLOW_CHROMIUM=${BUSFLOW_CHROMIUM:-/usr/bin/chromium}
# Tests that need a server fail when it is missing (developers may opt out with BUSFLOW_SKIP_SERVER_TESTS=1).

