#!/usr/bin/env bash
# The chaos runner (docs/reliability.md), by default its long profile: starts the servers as
# tests/run.sh does (PostgreSQL, and a 3-node RabbitMQ cluster with quorum queues), builds the
# runner in Release, publishes BusFlow.Host as docker-compose.yml does, and runs the runner with
# the arguments given (default: --profile long --docs, which writes the run into docs/reliability.md).
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/servers.sh
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 MASSTRANSIT_USAGE_TELEMETRY=false
dotnet build -c Release tests/BusFlow.Chaos -nologo -v quiet
# The processes run the host as docker-compose.yml ships it: published, Release, ReadyToRun.
dotnet publish src/BusFlow.Host -c Release -o artifacts/host -nologo -v quiet
export BUSFLOW_CHAOS_HOST=artifacts/host/BusFlow.Host.dll
[ $# -gt 0 ] || set -- --profile long --docs
start_rabbitmq_cluster
cluster=$(chaos_env)
# shellcheck disable=SC2086 # NAME=value words for env
env $cluster dotnet tests/BusFlow.Chaos/bin/Release/net10.0/BusFlow.Chaos.dll "$@"
