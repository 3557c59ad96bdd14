#!/usr/bin/env bash
# The Alertmanager API's reads under load, GoMon (release build, PostgreSQL) against Prometheus Alertmanager given the
# same alerts, in the same run:
#   1. `GET /api/v2/alerts?filter=instance=~"\w{10}.*"` over OPEN (default 2000) open alerts; then `/health/live`
#      latency on GoMon while four such requests run at once, the whole time. Targets: the filtered request under
#      100 ms; /health/live under 50 ms meanwhile.
#   2. `GET /api/v2/alerts` (everything) at LISTING (default 100000) open alerts: time, and how much the peak
#      resident memory of each server grew while answering (VmHWM before and after).
#   3. `GET /api/v2/alerts?filter=alertname="Many"&filter=team="team-7"` at LISTING open alerts (2% of them, 2,000 of
#      100,000): time, and CPU time per request of each server (GoMon's with PostgreSQL's).
# Environment: OPEN, LISTING, RUNS (timed requests per measure, default 20), BUSY seconds of load (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
OPEN=${OPEN:-2000}
LISTING=${LISTING:-100000}
RUNS=${RUNS:-20}
BUSY=${BUSY:-10}

missing=()
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || missing+=(postgresql)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
. scripts/lib/install.sh
install_packages bench-alert-filters.sh "${missing[@]}"

cargo build --release -q -p gomon
. scripts/lib/postgres.sh
WORK=$(mktemp -d /tmp/gomon-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  stop_postgres
  rm -rf "$WORK"
}
trap cleanup EXIT
start_postgres >/dev/null
as_postgres "$PG_BIN/psql" -q "$TEST_POSTGRES_URL/postgres" -c "CREATE DATABASE bench"

GOMON="http://127.0.0.1:$(free_port)"
GOMON_ALERTING__LISTEN="${GOMON#http://}" GOMON_ALERTING__DATABASE__URL="$TEST_POSTGRES_URL/bench" \
  target/release/gomon alerting >"$WORK/gomon.log" 2>&1 &
GOMON_PID=$!
PIDS+=($!)
AM="http://127.0.0.1:$(free_port)"
printf 'route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n' >"$WORK/alertmanager.yml"
prometheus-alertmanager --config.file="$WORK/alertmanager.yml" --storage.path="$WORK/am" \
  --web.listen-address="${AM#http://}" --cluster.listen-address= >"$WORK/am.log" 2>&1 &
AM_PID=$!
PIDS+=($!)
for base in "$GOMON" "$AM"; do
  for _ in $(seq 200); do curl -sf "$base/-/ready" >/dev/null || curl -sf "$base/health/ready" >/dev/null && break; sleep 0.1; done
done

# The same alerts to both, in batches of 500: alerts FROM to TO-1.
ends=$(date -u -d '+2 hour' +%Y-%m-%dT%H:%M:%SZ)
post_alerts() {
  for start in $(seq "$1" 500 $(($2 - 1))); do
    jq -nc --argjson from "$start" --argjson to "$((start + 500 < $2 ? start + 500 : $2))" --arg ends "$ends" \
      '[range($from; $to) | {labels: {alertname: "Many", instance: ("node-\(.)" + ".example:9100"),
        team: ("team-\(. % 50)")}, endsAt: $ends}]' \
      >"$WORK/batch.json"
    for base in "$GOMON" "$AM"; do
      curl -sf -X POST -H 'Content-Type: application/json' --data-binary @"$WORK/batch.json" "$base/api/v2/alerts" >/dev/null
    done
  done
}
post_alerts 0 "$OPEN"

FILTER='filter=instance%3D~%22%5Cw%7B10%7D.*%22'
median_ms() { # url -> median and max of RUNS requests, in ms
  for _ in $(seq "$RUNS"); do curl -s -o /dev/null -w '%{time_total}\n' "$1"; done \
    | sort -n | awk '{ t[NR] = $1 * 1000 } END { printf "%.1f %.1f\n", t[int((NR + 1) / 2)], t[NR] }'
}
count() { curl -s "$1/api/v2/alerts" | jq length; }
echo "$OPEN open alerts (GoMon $(count "$GOMON"), Alertmanager $(count "$AM")); $RUNS requests per measure; $(nproc) cores"
read -r gomon_med gomon_max < <(median_ms "$GOMON/api/v2/alerts?$FILTER")
read -r am_med am_max < <(median_ms "$AM/api/v2/alerts?$FILTER")
echo "filter instance=~\"\\w{10}.*\": GoMon median ${gomon_med} ms (max ${gomon_max}), Alertmanager median ${am_med} ms (max ${am_max})"
awk -v g="$gomon_med" -v a="$am_med" 'BEGIN { printf "  GoMon / Alertmanager median: %.2f\n", g / a }'

# Four clients repeating the filtered request for BUSY seconds, and /health/live timed meanwhile.
for _ in 1 2 3 4; do
  (end=$((SECONDS + BUSY)); while [ $SECONDS -lt $end ]; do curl -s -o /dev/null "$GOMON/api/v2/alerts?$FILTER"; done) &
  PIDS+=($!)
done
sleep 1
read -r live_med live_max < <(RUNS=$((RUNS * 2)) median_ms "$GOMON/health/live")
echo "/health/live during 4 concurrent filtered requests: median ${live_med} ms, max ${live_max} ms"
awk -v f="$gomon_med" -v l="$live_max" 'BEGIN {
  printf "targets: filtered request < 100 ms: %s; /health/live < 50 ms: %s\n",
    (f < 100 ? "met" : "NOT met"), (l < 50 ? "met" : "NOT met") }'

# 2. The whole listing at LISTING open alerts.
sleep $((BUSY + 1)) # the four clients stop by themselves
post_alerts "$OPEN" "$LISTING"
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
list_all() { # name base pid
  local before after seconds
  before=$(hwm_kb "$3")
  seconds=$(curl -s -o "$WORK/all.json" -w '%{time_total}' "$2/api/v2/alerts")
  after=$(hwm_kb "$3")
  printf '%s: %d alerts in %.2f s; peak resident memory %d MiB before, %d MiB after (+%d MiB)\n' "$1" \
    "$(jq length "$WORK/all.json")" "$seconds" $((before / 1024)) $((after / 1024)) $(((after - before) / 1024))
}
echo "GET /api/v2/alerts at $LISTING open alerts:"
list_all "  GoMon       " "$GOMON" "$GOMON_PID"
list_all "  Alertmanager" "$AM" "$AM_PID"

# 3. A filtered listing at LISTING open alerts: CPU time per request of each server (GoMon's counted with PostgreSQL's,
# the postmaster and its backends), from /proc, over RUNS requests one after another.
cpu_ticks() { # pid... -> utime + stime of each and of its children processes, in clock ticks
  local total=0 pid
  for pid in "$@" $(for parent in "$@"; do pgrep -P "$parent"; done); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
SELECTIVE='filter=alertname%3D%22Many%22&filter=team%3D%22team-7%22'
PG_PID=$(head -n 1 "$PG_DIR/data/postmaster.pid")
filtered() { # name base pids...
  local name=$1 base=$2 before after count
  shift 2
  count=$(curl -s "$base/api/v2/alerts?$SELECTIVE" | jq length)
  before=$(cpu_ticks "$@")
  read -r med max < <(median_ms "$base/api/v2/alerts?$SELECTIVE")
  after=$(cpu_ticks "$@")
  awk -v n="$name" -v c="$count" -v m="$med" -v x="$max" -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" \
    -v r="$RUNS" 'BEGIN { printf "%s: %d alerts, median %.1f ms (max %.1f), CPU %.1f ms per request\n", n, c, m, x,
      1000 * t / hz / r }'
}
echo "GET /api/v2/alerts?filter=alertname=\"Many\"&filter=team=\"team-7\" at $LISTING open alerts:"
filtered "  GoMon (with PostgreSQL)" "$GOMON" "$GOMON_PID" "$PG_PID"
filtered "  Alertmanager           " "$AM" "$AM_PID"
