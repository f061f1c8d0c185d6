#!/usr/bin/env bash
# Start-up benchmark (docs/performance.md, "Start-up"): BusFlow.Host published as docker-compose.yml
# ships it (Release, ReadyToRun) side by side with the same publish without ReadyToRun, each role
# started in turn on RabbitMQ + PostgreSQL (tests/servers.sh starts them). Prints, per flavour and
# role, the median seconds until /health/ready answers and the median CPU seconds the process used
# until then. Usage: tests/bench-startup.sh [rounds (5)] [busy loops beside it (0)].
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/servers.sh
rounds=${1:-5}
busy=${2:-0}
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 MASSTRANSIT_USAGE_TELEMETRY=false
out=artifacts/bench-startup
dotnet publish src/BusFlow.Host -c Release -o "$out/readytorun" -nologo -v quiet
dotnet publish src/BusFlow.Host -c Release -p:PublishReadyToRun=false -o "$out/jit" -nologo -v quiet
db=busflow_bench_startup_$$
psql -h 127.0.0.1 -p "$BUSFLOW_POSTGRES_PORT" -U postgres -qc "CREATE DATABASE $db" >/dev/null
busy_pids=()
cleanup() {
  [ ${#busy_pids[@]} -eq 0 ] || kill "${busy_pids[@]}" 2>/dev/null || true
  psql -h 127.0.0.1 -p "$BUSFLOW_POSTGRES_PORT" -U postgres -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
}
trap cleanup EXIT
export BusFlow__Transport=RabbitMq BusFlow__RabbitMq__Host=127.0.0.1 BusFlow__RabbitMq__Port="$BUSFLOW_RABBITMQ_PORT"
export BusFlow__Store__Provider=Postgres BusFlow__Store__ApplyMigrations=true Logging__LogLevel__Default=Warning
export BusFlow__Store__ConnectionString="Host=127.0.0.1;Port=$BUSFLOW_POSTGRES_PORT;Username=postgres;Database=$db"

# One start: prints "<seconds until ready> <CPU seconds until then>".
start_once() {
  local dir=$1 role=$2 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  local begin; begin=$(date +%s.%N)
  BusFlow__Roles=$role dotnet "$dir/BusFlow.Host.dll" --urls "http://127.0.0.1:$port" >"$out/last.log" 2>&1 &
  local pid=$!
  until curl -sf -m 5 "http://127.0.0.1:$port/health/ready" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "BusFlow.Host ($role) exited:" >&2; tail -20 "$out/last.log" >&2; exit 1; }
    sleep 0.02
  done
  local ready; ready=$(date +%s.%N)
  local ticks; ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
  echo "$(echo "$ready - $begin" | bc) $(echo "$ticks / $(getconf CLK_TCK)" | bc -l)"
}

# The first start applies the migrations; it is not counted.
start_once "$out/jit" saga >/dev/null
for _ in $(seq 1 "$busy"); do (while :; do :; done) & busy_pids+=($!); done
declare -A wall cpu
for _ in $(seq 1 "$rounds"); do
  for role in saga worker edge; do
    for flavour in jit readytorun; do
      read -r w c < <(start_once "$out/$flavour" "$role")
      wall[$flavour/$role]+="$w "; cpu[$flavour/$role]+="$c "
    done
  done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {printf "%.2f", NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "Start-up of BusFlow.Host on RabbitMQ + PostgreSQL, $rounds rounds, $busy busy loops beside it; $(nproc) cores; commit $(git rev-parse --short HEAD)"
echo
echo "| role | ready, s (JIT) | ready, s (ReadyToRun) | CPU, s (JIT) | CPU, s (ReadyToRun) | CPU ReadyToRun / JIT |"
echo "|---|---:|---:|---:|---:|---:|"
for role in saga worker edge; do
  wj=$(median <<<"${wall[jit/$role]}"); wr=$(median <<<"${wall[readytorun/$role]}")
  cj=$(median <<<"${cpu[jit/$role]}"); cr=$(median <<<"${cpu[readytorun/$role]}")
  echo "| $role | $wj | $wr | $cj | $cr | $(echo "scale=2; $cr / $cj" | bc) |"
done
