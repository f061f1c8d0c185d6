#!/usr/bin/env bash
# Runs BusFlow's whole test suite on a fresh Debian 12 machine (as root): installs and starts the
# real servers the tests need when they are missing, checks formatting, builds with warnings as
# errors, and runs every test project. Servers this script starts are stopped when it ends unless
# BUSFLOW_KEEP_SERVICES=1.
set -euo pipefail
cd "$(dirname "$0")/.."
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
if [ ${#need_packages[@]} -gt 0 ]; then
  log "installing ${need_packages[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need_packages[@]}" >/dev/null
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
if ! port_open "$BUSFLOW_POSTGRES_PORT"; then
  log "starting PostgreSQL on 127.0.0.1:$BUSFLOW_POSTGRES_PORT"
  mkdir -p "$PG"
  chown postgres: "$PG"
  chmod 755 "$STATE"
  [ -f "$PG/data/PG_VERSION" ] || su postgres -c "/usr/lib/postgresql/15/bin/initdb -D $PG/data -U postgres --auth=trust -E UTF8" >/dev/null
  su postgres -c "/usr/lib/postgresql/15/bin/pg_ctl -D $PG/data -l $PG/server.log -o '-p $BUSFLOW_POSTGRES_PORT -k $PG -c listen_addresses=127.0.0.1 -c max_connections=300' -w start" >/dev/null
  started+=(postgres)
fi

stop_started() {
  [ "${BUSFLOW_KEEP_SERVICES:-0}" = 1 ] && return
  for s in "${started[@]}"; do
    case $s in
      rabbitmq) rmq_env /usr/lib/rabbitmq/bin/rabbitmqctl stop "$RMQ/rabbit.pid" >/dev/null 2>&1 || true ;;
      postgres) su postgres -c "/usr/lib/postgresql/15/bin/pg_ctl -D $PG/data -m fast stop" >/dev/null 2>&1 || true ;;
    esac
  done
}
trap stop_started EXIT

export BUSFLOW_TEST_RABBITMQ="amqp://guest:guest@127.0.0.1:$BUSFLOW_RABBITMQ_PORT/"
export BUSFLOW_TEST_POSTGRES="Host=127.0.0.1;Port=$BUSFLOW_POSTGRES_PORT;Username=postgres"
export BUSFLOW_CHROMIUM=${BUSFLOW_CHROMIUM:-/usr/bin/chromium}
# Tests that need a server fail when it is missing (developers may opt out with BUSFLOW_SKIP_SERVER_TESTS=1).

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 MASSTRANSIT_USAGE_TELEMETRY=false

log "checking formatting"
dotnet format BusFlow.sln --verify-no-changes
log "building with warnings as errors"
dotnet build BusFlow.sln -warnaserror -nologo -v quiet
log "running the tests"
RESULTS=$ROOT/artifacts/test-results
rm -rf "$RESULTS"
status=0
dotnet test BusFlow.sln --no-build -nologo --logger "console;verbosity=normal" --logger trx --results-directory "$RESULTS" "$@" || status=$?
# The console log interleaves five projects' output; name what failed last, where a reader of the tail sees it.
if [ "$status" -ne 0 ]; then
  log "the tests failed (exit $status); failed tests:"
  # Each failed test's name, then the first lines of its message.
  awk '/<UnitTestResult /{failed = /outcome="Failed"/; if (failed) {name = $0; sub(/.*testName="/, "", name); sub(/".*/, "", name); print "  " name}}
       failed && /<Message>/{on = 1; n = 0}
       on && n < 6 {print "      " $0; n++}
       /<\/Message>/{on = 0}' "$RESULTS"/*.trx 2>/dev/null || true
fi
exit "$status"
