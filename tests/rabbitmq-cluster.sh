#!/usr/bin/env bash
# A 3-node RabbitMQ cluster on this machine for the chaos runner (docs/reliability.md), beside the
# single broker of tests/servers.sh: nodes busflow-c1..3@localhost on AMQP ports 5681-5683
# (distribution 25681-25683), the management API on node 1 only (15681). One Erlang cookie for all
# (HOME is shared), a data folder each.
#   start          start the nodes that are not running and join 2 and 3 to 1 (idempotent)
#   stop           stop every node
#   kill N         SIGKILL node N's Erlang VM (no shutdown: as if the machine died)
#   start-node N   start node N again (it rejoins the cluster it belonged to)
#   stop-app N, start-app N   stop and start RabbitMQ on node N, the VM staying up (a graceful restart)
#   env            print the exports that point the chaos runner at the cluster
set -euo pipefail
trap 'echo "tests/rabbitmq-cluster.sh: \"$BASH_COMMAND\" failed" >&2' ERR
DIR=${BUSFLOW_RABBITMQ_CLUSTER_DIR:-/tmp/busflow-services/rabbitmq-cluster}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=/usr/lib/rabbitmq/bin
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
# The servers and CLI tools run from the data folder: a `reset` or `join_cluster` run elsewhere
# left a Mnesia.<node> folder in the caller's directory (the repository's root).
cd "$DIR"

node_env() {
  local n=$1
  mkdir -p "$DIR/n$n"
  if [ "$n" = 1 ]; then
    echo '[rabbitmq_management].' > "$DIR/n$n/enabled_plugins"
    printf 'management.tcp.port = 15681\nmanagement.tcp.ip = 127.0.0.1\n' > "$DIR/n$n/rabbitmq.conf"
  else
    echo '[].' > "$DIR/n$n/enabled_plugins"
    : > "$DIR/n$n/rabbitmq.conf"
  fi
  echo env HOME="$DIR" RABBITMQ_MNESIA_BASE="$DIR/n$n/mnesia" RABBITMQ_LOG_BASE="$DIR/n$n/log" \
    RABBITMQ_NODENAME="busflow-c$n@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$((5680 + n)) \
    RABBITMQ_DIST_PORT=$((25680 + n)) RABBITMQ_CONFIG_FILE="$DIR/n$n/rabbitmq" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/n$n/enabled_plugins" RABBITMQ_PID_FILE="$DIR/n$n/rabbit.pid"
}

ctl() { local n=$1; shift; $(node_env "$n") "$BIN/rabbitmqctl" -n "busflow-c$n@localhost" "$@"; }

running() { ctl "$1" status >/dev/null 2>&1; }

launch_node() {
  local n=$1
  running "$n" && return 0
  # A killed node's pid file names the dead VM: the wait below must not read it.
  rm -f "$DIR/n$n/rabbit.pid"
  $(node_env "$n") "$BIN/rabbitmq-server" -detached
}

wait_node() {
  $(node_env "$1") "$BIN/rabbitmqctl" -n "busflow-c$1@localhost" wait --timeout 300 "$DIR/n$1/rabbit.pid" >/dev/null
}

start_node() { launch_node "$1"; wait_node "$1"; }

case ${1:-} in
  start)
    # Every VM first, then the waits: a clustered node that was stopped before its peers waits
    # at boot until one of them is up, so starting them one after another can wait for ever.
    for n in 1 2 3; do launch_node "$n"; done
    for n in 1 2 3; do wait_node "$n"; done
    for n in 2 3; do
      # Joined once, a node stays in the cluster across restarts; reset only a node that is not in it
      # (never one whose status could not be read: a reset wipes its queue replicas).
      status=$(ctl "$n" cluster_status 2>&1)
      if ! grep -q "busflow-c1@localhost" <<<"$status"; then
        ctl "$n" stop_app >/dev/null 2>&1
        ctl "$n" reset >/dev/null 2>&1
        ctl "$n" join_cluster busflow-c1@localhost >/dev/null 2>&1
        ctl "$n" start_app >/dev/null 2>&1
      fi
    done
    ;;
  stop)
    for n in 1 2 3; do ctl "$n" stop >/dev/null 2>&1 || true; done
    ;;
  kill)
    kill -9 "$(cat "$DIR/n$2/rabbit.pid")"
    # epmd keeps the name registered a moment after the VM died.
    for _ in $(seq 1 50); do running "$2" || break; sleep 0.2; done
    ;;
  start-node)
    start_node "$2"
    ;;
  stop-app|start-app)
    ctl "$2" "${1/-/_}" >/dev/null
    ;;
  env)
    # The chaos runner's broker settings (tests/servers.sh's single broker for everything else).
    echo "BUSFLOW_TEST_RABBITMQ=amqp://guest:guest@127.0.0.1:5681/ BUSFLOW_RABBITMQ_MANAGEMENT_PORT=15681 BUSFLOW_RABBITMQ_NODES=127.0.0.1:5681,127.0.0.1:5682,127.0.0.1:5683 BUSFLOW_RABBITMQ_CLUSTER_CTL=$HERE/rabbitmq-cluster.sh"
    ;;
  *)
    echo "usage: $0 start|stop|kill N|start-node N|stop-app N|start-app N|env" >&2
    exit 2
    ;;
esac
