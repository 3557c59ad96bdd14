#!/usr/bin/env bash
# Load benchmark of `gomon alerting` (release build) on PostgreSQL with its stock settings:
#   1. latency at a fixed offered load (RATE, default 1000 requests/s) from an open-loop generator
#      (crates/testkit/src/bin/open-loop.rs: requests leave on schedule whatever the answers, and each latency runs
#      from when the request was due): creating alerts (POST /api/v1/alerts) and reading one by id, against the
#      seed's figures (p50 2 ms, p95 5 ms, p99 8 ms), after the same load on GET /health/live, which does no work:
#      the floor the machine and the generator put under every figure;
#   2. the read side at OPEN open alerts (default 100,000): filtered lists of GET /api/v1/alerts and
#      GET /api/v2/alerts at READ_RATE (default 100/s), and the whole of GET /api/v2/alerts at 1/s;
#   3. creation throughput at a fixed concurrency (CONNECTIONS, wrk), against pgbench inserting the same row into
#      the same table on the same server, in the same run; the ratio is printed.
# Environment: RATE, READ_RATE, OPEN, CONNECTIONS (default 16), DURATION seconds per phase (default 30).
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-1000}
READ_RATE=${READ_RATE:-100}
OPEN=${OPEN:-100000}
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

cargo build --release -q -p gomon -p gomon-testkit --bin gomon --bin open-loop
. scripts/lib/postgres.sh
WORK=$(mktemp -d /tmp/gomon-bench.XXXXXX)
GOMON_PID=
cleanup() {
  [ -n "$GOMON_PID" ] && kill "$GOMON_PID" 2>/dev/null && wait "$GOMON_PID" 2>/dev/null
  stop_postgres
  rm -rf "$WORK"
}
trap cleanup EXIT
PG_SETTINGS="" start_postgres
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

open_loop() { # rate duration url [open-loop options] -> RESULT line
  local rate=$1 duration=$2 url=$3
  shift 3
  target/release/open-loop "$url" --rate "$rate" --duration "$duration" --warmup 2 "$@" | sed 's/^RESULT //'
}
field() { echo "$1" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2; }
verdict() { # RESULT line -> against the seed's p50 2 ms, p95 5 ms, p99 8 ms
  awk -v a="$(field "$1" p50_ms)" -v b="$(field "$1" p95_ms)" -v c="$(field "$1" p99_ms)" -v e="$(field "$1" errors)" \
    'BEGIN { print ((a <= 2 && b <= 5 && c <= 8 && e == 0) ? "within" : "OVER") " the seed'"'"'s 2 / 5 / 8 ms" }'
}

echo "gomon alerting $(target/release/gomon --version | awk '{print $2}') on PostgreSQL (stock settings), $(nproc) cores;" \
  "open-loop phases ${DURATION}s after 2s of warm-up; $CONNECTIONS connections, $THREADS wrk threads for throughput"
floor=$(open_loop "$RATE" 5 "$BASE/health/live")
echo "the generator's floor, GET /health/live at ${RATE}/s (no work behind it): $floor"
create_body='{"source":"api","severity":"P3","title":"Open-loop alert {n}","namespace":"bench"}'
open_loop "$RATE" 3 "$BASE/api/v1/alerts" --method POST --header 'Content-Type: application/json' \
  --body "$create_body" >/dev/null # warm-up
create_paced=$(open_loop "$RATE" "$DURATION" "$BASE/api/v1/alerts" --method POST \
  --header 'Content-Type: application/json' --body "$create_body")
echo "create at ${RATE}/s offered:  $create_paced  ($(verdict "$create_paced"))"
curl -sf "$BASE/api/v1/alerts?limit=1000" | jq -r '.alerts[].id' >"$WORK/ids"
read_paced=$(open_loop "$RATE" "$DURATION" "$BASE/api/v1/alerts/{line}" --lines "$WORK/ids")
echo "read by id at ${RATE}/s:     $read_paced  ($(verdict "$read_paced"))"

# The read side at OPEN open alerts: 4 severities, 20 namespaces, 50 alert names, 10 teams.
as_postgres "$PG_BIN/psql" -q -v ON_ERROR_STOP=1 "$DB_URL" -c "INSERT INTO alerts_active (id, alert_group_id,
    fingerprint, source, severity, status, title, namespace, labels, annotations, created_at, updated_at, created_by)
  SELECT gen_random_uuid(), gen_random_uuid(), md5('open' || i), 'prometheus', 'P' || (1 + i % 4), 'firing',
    'Open alert ' || i, 'ns-' || (i % 20), jsonb_build_object('alertname', 'Load' || (i % 50), 'team',
    'team-' || (i % 10), 'instance', 'node-' || i || ':9100'), '{}', now() - i * interval '10 ms',
    now() - i * interval '10 ms', 'prometheus'
  FROM generate_series(1, $OPEN) AS i" -c "VACUUM ANALYZE"
open_now=$(curl -sf "$BASE/api/v1/alerts/summary" | jq '[.. | numbers] | add' 2>/dev/null || echo "?")
echo "read side at $OPEN open alerts (the summary counts $open_now), ${READ_RATE}/s each:"
for query in "/api/v1/alerts?status=firing&severity=P2&limit=50" "/api/v1/alerts?namespace=ns-7&limit=50" \
  "/api/v1/alerts?label=team%3Dteam-3&limit=50" "/api/v1/alerts?q=alert%2099&limit=50" \
  "/api/v2/alerts?filter=alertname%3D%22Load7%22&filter=team%3D%22team-7%22" \
  "/api/v2/alerts/groups?filter=alertname%3D%22Load7%22"; do
  printf '  %-70s %s\n' "GET $query" "$(open_loop "$READ_RATE" "$DURATION" "$BASE$query")"
done
printf '  %-70s %s\n' "GET /api/v2/alerts (all $OPEN, at 1/s)" "$(open_loop 1 "$DURATION" "$BASE/api/v2/alerts")"
as_postgres "$PG_BIN/psql" -q "$DB_URL" -c "DELETE FROM alerts_active WHERE title LIKE 'Open alert %'" \
  -c "VACUUM ANALYZE"

run_wrk() { # script rate duration -> RESULT line
  RATE=$2 THREADS=$THREADS wrk -t "$THREADS" -c "$CONNECTIONS" -d "${3}s" \
    -s "benches/alerting/$1" "$BASE" | grep '^RESULT' | sed 's/^RESULT //'
}
create_max=$(run_wrk create.lua 0 "$DURATION")
echo "create, unpaced (wrk):      $create_max"
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$GOMON_PID/status")
echo "gomon peak resident memory: $((rss_kb / 1024)) MiB"

pgbench_tps() { # script file -> transactions per second; pgbench's own words and a failure if it ran nothing
  local out
  out=$("$PGBENCH" -n -M prepared -c "$CONNECTIONS" -j "$THREADS" -T "$DURATION" -f "$1" "$DB_URL" 2>&1) || {
    echo "pgbench failed on $1:" >&2
    echo "$out" >&2
    return 1
  }
  echo "$out" | awk '/^tps =/ {print $3}'
}
tps_alert=$(pgbench_tps benches/alerting/pgbench-alert.sql)
tps_audit=$(pgbench_tps benches/alerting/pgbench-alert-and-audit.sql)
echo "pgbench, alert row only:    tps=$tps_alert"
echo "pgbench, alert + audit row: tps=$tps_audit"

api_rate=$(field "$create_max" rate)
awk -v api="$api_rate" -v a="$tps_alert" -v b="$tps_audit" 'BEGIN {
  printf "creation throughput: API %.0f/s = %.0f%% of pgbench alert row (%.0f/s), %.0f%% of pgbench alert + audit (%.0f/s)\n",
    api, 100 * api / a, a, 100 * api / b, b }'
