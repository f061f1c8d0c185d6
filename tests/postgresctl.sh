#!/usr/bin/env bash
# pg_ctl for the PostgreSQL tests/run.sh runs (its folder, port and options), so that run.sh starts
# it and the chaos runner stops it hard and starts it again the same way: start | stop-immediate | stop.
set -euo pipefail
PG=${BUSFLOW_POSTGRES_DIR:?run through tests/run.sh}
PORT=${BUSFLOW_POSTGRES_PORT:?run through tests/run.sh}
CTL=/usr/lib/postgresql/15/bin/pg_ctl
case "${1:-}" in
  start) su postgres -c "$CTL -D $PG/data -l $PG/server.log -o '-p $PORT -k $PG -c listen_addresses=127.0.0.1 -c max_connections=300' -w start" >/dev/null ;;
  stop-immediate) su postgres -c "$CTL -D $PG/data -m immediate stop" >/dev/null ;;
  stop) su postgres -c "$CTL -D $PG/data -m fast stop" >/dev/null ;;
  *) echo "usage: $0 start|stop-immediate|stop" >&2; exit 2 ;;
esac
