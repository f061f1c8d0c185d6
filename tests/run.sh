#!/usr/bin/env bash
# Runs BusFlow's whole test suite on a fresh Debian 12 machine (as root): installs and starts the
# real servers the tests need when they are missing, checks formatting, builds with warnings as
# errors, and runs every test project. Servers this script starts are stopped when it ends unless
# BUSFLOW_KEEP_SERVICES=1.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/servers.sh

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
# Tests that did not run, by name, with their reason (SQL Server's cases without BUSFLOW_TEST_SQLSERVER).
skipped=$(awk '/<UnitTestResult /{skip = /outcome="NotExecuted"/; if (skip) {name = $0; sub(/.*testName="/, "", name); sub(/".*/, "", name); print "  " name}}' "$RESULTS"/*.trx 2>/dev/null | sort || true)
if [ -n "$skipped" ]; then
  reasons=$(grep -h -A3 'outcome="NotExecuted"' "$RESULTS"/*.trx 2>/dev/null | sed -n 's/.*<Message>\(.*\)<\/Message>.*/\1/p' | sort -u || true)
  log "$(echo "$skipped" | wc -l) tests did not run (${reasons:-no reason given}):"
  echo "$skipped"
fi
# The TypeScript client's tests (clients/typescript, docs/clients.md): Node's test runner against
# real BusFlow.Host processes of this build, and the same watch in Chromium through Playwright; not
# when the tests were filtered by arguments.
if [ $# -eq 0 ]; then
  log "running the TypeScript client's tests"
  (cd clients/typescript && npm test --silent) || { log "the TypeScript client's tests failed"; [ "$status" -ne 0 ] || status=1; }
fi
# The chaos runner's short profile (docs/reliability.md): the split topology under load with every
# kind of fault once, a node kill included, on a 3-node RabbitMQ cluster with quorum queues and the
# same PostgreSQL; not when the tests were filtered by arguments.
if [ $# -eq 0 ] && [ "${BUSFLOW_SKIP_CHAOS:-0}" != 1 ]; then
  log "running the chaos runner's short profile"
  # The processes run the host as docker-compose.yml ships it: published, Release, ReadyToRun.
  dotnet publish src/BusFlow.Host -c Release -o artifacts/host -nologo -v quiet
  start_rabbitmq_cluster
  cluster=$(chaos_env)
  # shellcheck disable=SC2086 # NAME=value words for env
  env $cluster BUSFLOW_CHAOS_HOST=artifacts/host/BusFlow.Host.dll timeout 20m dotnet run --no-build --project tests/BusFlow.Chaos -- --profile short || { log "the chaos run failed"; [ "$status" -ne 0 ] || status=1; }
fi
exit "$status"
