#!/usr/bin/env bash
# Load benchmark of `gomon alerting` on PostgreSQL (release build, durable PostgreSQL settings):
#   1. creation and read-by-id latency at a fixed offered load (RATE, default 1000 requests/s) with wrk;
#   2. creation throughput at a fixed concurrency (CONNECTIONS), against pgbench inserting the same row into the
#      same table on the same server, in the same run; the ratio is printed.
# Environment: RATE, CONNECTIONS (default 16), DURATION seconds per phase (default 30).
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-1000}
CONNECTIONS=${CONNECTIONS:-16}
DURATION=${DURATION:-30}
THREADS=2

missing=()
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || missing+=(postgresql)
command -v wrk >/dev/null || missing+=(wrk)
command -v jq >/dev/null || missing+=(jq)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "missing packages: ${missing[*]}" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo build --release -q -p gomon
. scripts/lib/postgres.sh
WORK=$(mktemp -d /tmp/gomon-bench.XXXXXX)
GOMON_PID=
cleanup() {
  [ -n "$GOMON_PID" ] && kill "$GOMON_PID" 2>/dev/null && wait "$GOMON_PID" 2>/dev/null
  stop_postgres
  rm -rf "$WORK"
}
trap cleanup EXIT
PG_SETTINGS="-c shared_buffers=256MB" start_postgres
PGBENCH="$PG_BIN/pgbench"
as_postgres "$PG_BIN/psql" -q "$TEST_POSTGRES_URL/postgres" -c "CREATE DATABASE bench"
DB_URL="$TEST_POSTGRES_URL/bench"

PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
GOMON_ALERTING__LISTEN="127.0.0.1:$PORT" GOMON_ALERTING__DATABASE__URL="$DB_URL" \
  target/release/gomon alerting >"$WORK/gomon.log" 2>&1 &
GOMON_PID=$!
for _ in $(seq 100); do curl -sf "$BASE/health/ready" >/dev/null && break; sleep 0.1; done
curl -sf "$BASE/health/ready" >/dev/null || { cat "$WORK/gomon.log"; exit 1; }

run_wrk() { # script rate duration -> RESULT line
  RATE=$2 THREADS=$THREADS IDS="$WORK/ids" wrk -t "$THREADS" -c "$CONNECTIONS" -d "${3}s" \
    -s "benches/alerting/$1" "$BASE" | grep '^RESULT' | sed 's/^RESULT //'
}
field() { echo "$1" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2; }

echo "gomon alerting $(target/release/gomon --version | awk '{print $2}') on PostgreSQL, $(nproc) cores;" \
  "$CONNECTIONS connections, $THREADS wrk threads, ${DURATION}s per phase"
run_wrk create.lua 0 3 >/dev/null # warm-up
create_paced=$(run_wrk create.lua "$RATE" "$DURATION")
echo "create at ${RATE}/s offered:  $create_paced"
curl -sf "$BASE/api/v1/alerts?limit=1000" | jq -r '.alerts[].id' >"$WORK/ids"
read_paced=$(run_wrk read.lua "$RATE" "$DURATION")
echo "read by id at ${RATE}/s:     $read_paced"
create_max=$(run_wrk create.lua 0 "$DURATION")
echo "create, unpaced:            $create_max"
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$GOMON_PID/status")
echo "gomon peak resident memory: $((rss_kb / 1024)) MiB"

pgbench_tps() { # script file -> transactions per second
  "$PGBENCH" -n -M prepared -c "$CONNECTIONS" -j "$THREADS" -T "$DURATION" -f "$1" "$DB_URL" 2>/dev/null \
    | awk '/^tps =/ {print $3}'
}
tps_alert=$(pgbench_tps benches/alerting/pgbench-alert.sql)
tps_audit=$(pgbench_tps benches/alerting/pgbench-alert-and-audit.sql)
echo "pgbench, alert row only:    tps=$tps_alert"
echo "pgbench, alert + audit row: tps=$tps_audit"

api_rate=$(field "$create_max" rate)
awk -v api="$api_rate" -v a="$tps_alert" -v b="$tps_audit" 'BEGIN {
  printf "creation throughput: API %.0f/s = %.0f%% of pgbench alert row (%.0f/s), %.0f%% of pgbench alert + audit (%.0f/s)\n",
    api, 100 * api / a, a, 100 * api / b, b }'
for result in "$create_paced" "$read_paced"; do
  p99=$(field "$result" p99_ms)
  awk -v p="$p99" 'BEGIN { exit !(p <= 5.0) }' && verdict="within" || verdict="OVER"
  echo "p99 $p99 ms: $verdict the 5 ms target"
done
