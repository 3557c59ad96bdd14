#!/usr/bin/env bash
# Throughput of POST /api/v2/alerts (the Alertmanager API that Prometheus and vmalert use): GoMon's alerting service
# (release build, every alert persisted in PostgreSQL) against Prometheus Alertmanager (Debian package, in memory)
# on this machine in the same run, with the same load (wrk, 2 threads, CONNECTIONS connections), in these shapes:
#   new-64       batches of 64 new alerts (unique label sets)
#   new-1        single new alerts
#   mixed-64     batches of 64, half of them repeats of alerts sent before (a rule engine resending what fires)
#   mixed-1      single alerts, half repeats
#   varied       batches of 1 to 500 alerts (uniform), half repeats
# PostgreSQL runs with its stock settings (fsync and synchronous_commit on, shared_buffers 128MB) and its alerts
# table holds PREFILL resolved alerts (default 1,000,000) before the first phase. Each shape runs RUNS times
# (default 5), GoMon and Alertmanager alternately (which goes first alternates too), each phase from the same
# state: GoMon's table back to the resolved alerts alone, a fresh Alertmanager. Prints alerts per second and the
# ratio of each run, and per shape the median and lowest ratio.
# Environment: CONNECTIONS (16), DURATION seconds per phase (8), RUNS (5), PREFILL (1000000), SHAPES (all of the
# above, space-separated).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${CONNECTIONS:-16}
DURATION=${DURATION:-8}
RUNS=${RUNS:-5}
PREFILL=${PREFILL:-1000000}
SHAPES=${SHAPES:-new-64 new-1 mixed-64 mixed-1 varied}
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
PG_SETTINGS="" start_postgres
as_postgres "$PG_BIN/psql" -q "$TEST_POSTGRES_URL/postgres" -c "CREATE DATABASE bench"

wait_ready() { # url log
  for _ in $(seq 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done
  cat "$2"; exit 1
}
run_wrk() { # base batch batch_max repeat -> alerts per second (failed requests abort)
  local result rate errors
  result=$(BATCH=$2 BATCH_MAX=$3 REPEAT=$4 THREADS=$THREADS wrk -t "$THREADS" -c "$CONNECTIONS" \
    -d "${DURATION}s" -s benches/alerting/am-alerts.lua "$1" | grep '^RESULT')
  errors=$(echo "$result" | tr ' ' '\n' | grep '^errors=' | cut -d= -f2)
  [ "$errors" = 0 ] || { echo "$1: $errors failed requests: $result" >&2; exit 1; }
  rate=$(echo "$result" | tr ' ' '\n' | grep '^rate=' | cut -d= -f2)
  awk -v r="$rate" -v b="$2" -v m="$3" 'BEGIN { printf "%.0f", r * (b + m) / 2 }'
}
shape() { # name -> "batch batch_max repeat"
  case $1 in
    new-64) echo "64 64 0" ;;
    new-1) echo "1 1 0" ;;
    mixed-64) echo "64 64 0.5" ;;
    mixed-1) echo "1 1 0.5" ;;
    varied) echo "1 500 0.5" ;;
    *) echo "unknown shape $1" >&2; exit 1 ;;
  esac
}
psql_bench() { as_postgres "$PG_BIN/psql" -q -v ON_ERROR_STOP=1 "$TEST_POSTGRES_URL/bench" "$@"; }

GOMON_PORT=$(free_port)
GOMON="http://127.0.0.1:$GOMON_PORT"
GOMON_BENCH_LISTEN="127.0.0.1:$GOMON_PORT" GOMON_BENCH_DATABASE_URL="$TEST_POSTGRES_URL/bench" RUST_LOG=warn \
  target/release/examples/serve >"$WORK/gomon.log" 2>&1 &
PIDS+=($!)
wait_ready "$GOMON/health/ready" "$WORK/gomon.log"

# PREFILL resolved alerts, each with its audit trail's last entry, as months of use leave them.
psql_bench -c "INSERT INTO alerts_active (id, alert_group_id, fingerprint, source, severity, status, title,
    namespace, labels, annotations, created_at, updated_at, resolved_at, created_by)
  SELECT gen_random_uuid(), gen_random_uuid(), md5(i::text), 'prefill', 'P3', 'resolved', 'Prefilled alert ' || i,
    'prefill', jsonb_build_object('alertname', 'Prefilled', 'n', i::text), '{}',
    now() - interval '90 days' + i * interval '5 seconds', now() - interval '90 days' + i * interval '5 seconds',
    now() - interval '90 days' + i * interval '5 seconds' + interval '10 minutes', 'prometheus'
  FROM generate_series(1, $PREFILL) AS i" \
  -c "INSERT INTO alert_actions (alert_id, action, actor, created_at)
  SELECT id, 'resolved', 'prometheus', resolved_at FROM alerts_active" \
  -c "VACUUM ANALYZE" -c "CHECKPOINT"

AM_PORT=$(free_port)
AM="http://127.0.0.1:$AM_PORT"
printf 'route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n' >"$WORK/alertmanager.yml"
AM_PID=
start_am() { # a fresh Alertmanager: nothing in memory from an earlier phase
  [ -n "$AM_PID" ] && kill "$AM_PID" 2>/dev/null && wait "$AM_PID" 2>/dev/null
  rm -rf "$WORK/am"
  prometheus-alertmanager --config.file="$WORK/alertmanager.yml" --storage.path="$WORK/am" \
    --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= >"$WORK/am.log" 2>&1 &
  AM_PID=$!
  PIDS+=("$AM_PID")
  wait_ready "$AM/-/ready" "$WORK/am.log"
}
reset_gomon() { # the table back to the prefilled resolved alerts
  psql_bench -c "DELETE FROM notifications" -c "DELETE FROM alert_actions WHERE action <> 'resolved'" \
    -c "DELETE FROM alerts_active WHERE source <> 'prefill'" -c "VACUUM ANALYZE" -c "CHECKPOINT"
}

echo "POST /api/v2/alerts, $(nproc) cores, $CONNECTIONS connections, ${DURATION}s per phase, $RUNS runs;" \
  "PostgreSQL stock settings, $PREFILL resolved alerts; Alertmanager" \
  "$(prometheus-alertmanager --version 2>&1 | head -1 | awk '{print $3}')"
declare -A ratios
for run in $(seq "$RUNS"); do
  for name in $SHAPES; do
    read -r batch batch_max repeat <<<"$(shape "$name")"
    reset_gomon
    start_am
    if [ $((run % 2)) = 1 ]; then
      gomon=$(run_wrk "$GOMON" "$batch" "$batch_max" "$repeat")
      am=$(run_wrk "$AM" "$batch" "$batch_max" "$repeat")
    else
      am=$(run_wrk "$AM" "$batch" "$batch_max" "$repeat")
      gomon=$(run_wrk "$GOMON" "$batch" "$batch_max" "$repeat")
    fi
    ratio=$(awk -v g="$gomon" -v a="$am" 'BEGIN { printf "%.2f", g / a }')
    ratios[$name]="${ratios[$name]:-} $ratio"
    printf 'run %d %-9s GoMon (PostgreSQL) %6d alerts/s, Alertmanager (memory) %6d alerts/s, ratio %s\n' \
      "$run" "$name" "$gomon" "$am" "$ratio"
  done
done
for name in $SHAPES; do
  echo "${ratios[$name]}" | tr ' ' '\n' | grep . | sort -n | awk -v n="$name" '
    { r[NR] = $1 } END { printf "%-9s ratio over %d runs: median %.2f, lowest %.2f, highest %.2f\n",
      n, NR, (NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2), r[1], r[NR] }'
done
