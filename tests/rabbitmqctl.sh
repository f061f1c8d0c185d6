#!/usr/bin/env bash
# rabbitmqctl for the broker tests/run.sh started (its node name and folders), so tests can stop and start it.
set -euo pipefail
RMQ=${BUSFLOW_RABBITMQ_DIR:?run through tests/run.sh}
export HOME=$RMQ RABBITMQ_MNESIA_BASE=$RMQ/mnesia RABBITMQ_LOG_BASE=$RMQ/log RABBITMQ_NODENAME=busflow@localhost \
  RABBITMQ_ENABLED_PLUGINS_FILE=$RMQ/enabled_plugins RABBITMQ_PID_FILE=$RMQ/rabbit.pid
exec /usr/lib/rabbitmq/bin/rabbitmqctl "$@"
