#!/usr/bin/env bash
# Adds a migration for both providers: migrations/add.sh <Name>
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: migrations/add.sh <MigrationName>}
tool=/tmp/busflow-dotnet-ef
[ -x $tool/dotnet-ef ] || dotnet tool install --tool-path $tool dotnet-ef --version 10.0.14
for provider in Sqlite Postgres; do
  BUSFLOW_MIGRATIONS_PROVIDER=$provider $tool/dotnet-ef migrations add "$name" \
    --project migrations/BusFlow.Store.Migrations.$provider \
    --startup-project migrations/tooling \
    --context BusFlowDbContext
done
