#!/usr/bin/env bash
# Throughput of POST /api/v2/alerts (the Alertmanager API that Prometheus and vmalert use): GoMon's alerting service
# (release build, PostgreSQL with durable settings, every alert persisted) against Prometheus Alertmanager (Debian
# package, in memory) on this machine in the same run, with the same workload: new alerts (unique label sets) in
# batches of 64 (what rule engines send at most per request) and one by one. Prints alerts per second and ratios.
# PostgreSQL runs with durable settings (fsync and synchronous_commit on, the defaults) and shared_buffers=256MB.
# Environment: CONNECTIONS (default 16), DURATION seconds per phase (default 20; a phase of batches stores about
# 60,000 alerts a second, some 1.5 GB of tables and WAL in 20 s).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${CONNECTIONS:-16}
DURATION=${DURATION:-20}
THREADS=2

missing=()
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || missing+=(postgresql)
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "missing packages: ${missing[*]}" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo build --release -q -p gomon-alerting --example serve
. scripts/lib/postgres.sh
WORK=$(mktemp -d /tmp/gomon-am-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  stop_postgres
  rm -rf "$WORK"
}
trap cleanup EXIT
PG_SETTINGS="-c shared_buffers=256MB" start_postgres
as_postgres "$PG_BIN/psql" -q "$TEST_POSTGRES_URL/postgres" -c "CREATE DATABASE bench"

wait_ready() { # url log
  for _ in $(seq 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done
  cat "$2"; exit 1
}
run_wrk() { # base batch -> alerts per second (failed requests abort)
  local result rate errors
  result=$(BATCH=$2 THREADS=$THREADS wrk -t "$THREADS" -c "$CONNECTIONS" -d "${DURATION}s" \
    -s benches/alerting/am-alerts.lua "$1" | grep '^RESULT')
  errors=$(echo "$result" | tr ' ' '\n' | grep '^errors=' | cut -d= -f2)
  [ "$errors" = 0 ] || { echo "$1: $errors failed requests: $result" >&2; exit 1; }
  rate=$(echo "$result" | tr ' ' '\n' | grep '^rate=' | cut -d= -f2)
  awk -v r="$rate" -v b="$2" 'BEGIN { printf "%.0f", r * b }'
}

GOMON_PORT=$(free_port)
GOMON="http://127.0.0.1:$GOMON_PORT"
GOMON_BENCH_LISTEN="127.0.0.1:$GOMON_PORT" GOMON_BENCH_DATABASE_URL="$TEST_POSTGRES_URL/bench" RUST_LOG=warn \
  target/release/examples/serve >"$WORK/gomon.log" 2>&1 &
PIDS+=($!)
wait_ready "$GOMON/health/ready" "$WORK/gomon.log"

AM_PORT=$(free_port)
AM="http://127.0.0.1:$AM_PORT"
printf 'route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n' >"$WORK/alertmanager.yml"
prometheus-alertmanager --config.file="$WORK/alertmanager.yml" --storage.path="$WORK/am" \
  --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= >"$WORK/am.log" 2>&1 &
PIDS+=($!)
wait_ready "$AM/-/ready" "$WORK/am.log"

echo "POST /api/v2/alerts, new alerts, $(nproc) cores, $CONNECTIONS connections, ${DURATION}s per phase;" \
  "Alertmanager $(prometheus-alertmanager --version 2>&1 | head -1 | awk '{print $3}')"
for batch in 64 1; do
  gomon=$(run_wrk "$GOMON" "$batch")
  # Each phase starts from empty tables; this also keeps the disk used to one phase's alerts.
  as_postgres "$PG_BIN/psql" -q "$TEST_POSTGRES_URL/bench" -c "TRUNCATE alerts_active, alert_actions, notifications" \
    -c "CHECKPOINT"
  am=$(run_wrk "$AM" "$batch")
  awk -v g="$gomon" -v a="$am" -v b="$batch" 'BEGIN {
    printf "batches of %2d: GoMon (PostgreSQL) %6d alerts/s, Alertmanager (memory) %6d alerts/s, ratio %.2f\n",
      b, g, a, g / a }'
done
