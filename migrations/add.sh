#!/usr/bin/env bash
# Adds a migration for every provider: migrations/add.sh <Name> [provider...] (default: Sqlite Postgres SqlServer)
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: migrations/add.sh <MigrationName> [provider...]}
shift
[ $# -gt 0 ] || set -- Sqlite Postgres SqlServer
tool=/tmp/busflow-dotnet-ef-10.0.15
[ -x $tool/dotnet-ef ] || dotnet tool install --tool-path $tool dotnet-ef --version 10.0.15
for provider in "$@"; do
  BUSFLOW_MIGRATIONS_PROVIDER=$provider $tool/dotnet-ef migrations add "$name" \
    --project migrations/BusFlow.Store.Migrations.$provider \
    --startup-project migrations/tooling \
    --context BusFlowDbContext
done
