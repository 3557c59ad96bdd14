#!/usr/bin/env bash
# Benchmark of `gomon agent` (release build) against a tansu broker: CPU time per collection cycle and resident
# memory in steady state, from /proc/<pid>/stat and status. Budget: <= 2 ms of CPU per cycle, <= 15 MB resident,
# and at most 0.3 of node_exporter's CPU per scrape on the same host in the same run.
# Environment: CYCLES (default 120) at INTERVAL (default 1s); TRACES=1 exports spans to a local OTLP/HTTP sink;
# PROFILE (default release) the cargo profile built and run, or AGENT_BIN a gomon executable to run as it is.
# When prometheus-node-exporter is installed it runs beside the agent, scraped every INTERVAL during the same
# cycles, and its CPU per scrape is printed with the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
CYCLES=${CYCLES:-120}
INTERVAL=${INTERVAL:-1}
PROFILE=${PROFILE:-release}
command -v tansu >/dev/null || { echo "tansu is missing: cargo install tansu --features dynostore" >&2; exit 1; }
if [ -z "${AGENT_BIN:-}" ]; then
  cargo build --profile "$PROFILE" -q -p gomon
  AGENT_BIN=${CARGO_TARGET_DIR:-target}/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/gomon
fi
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
KAFKA=$(free_port)
LISTEN=$(free_port)
tansu broker --listener-url "tcp://127.0.0.1:$KAFKA" --advertised-listener-url "tcp://127.0.0.1:$KAFKA" \
  --storage-engine memory://tansu/ >/dev/null 2>&1 &
BROKER=$!
AGENT=
NE=
SCRAPER=
. scripts/lib/otlp-sink.sh
# The agent first, so that it can flush its spans to the sink; errexit off, so that one process already gone does
# not leave the others running.
trap 'set +e; kill $AGENT 2>/dev/null; wait $AGENT 2>/dev/null; kill $BROKER $SINK $NE $SCRAPER 2>/dev/null; wait 2>/dev/null' EXIT
start_otlp_sink
sleep 1
GOMON_LOG=warn GOMON_AGENT__INTERVAL=${INTERVAL}s GOMON_AGENT__LISTEN=127.0.0.1:$LISTEN \
  GOMON_AGENT__KAFKA__BROKERS=127.0.0.1:$KAFKA GOMON_AGENT__KAFKA__CREATE_TOPIC=true \
  "$AGENT_BIN" agent &
AGENT=$!
if command -v prometheus-node-exporter >/dev/null; then
  NE_PORT=$(free_port)
  prometheus-node-exporter --web.listen-address="127.0.0.1:$NE_PORT" >/dev/null 2>&1 &
  NE=$!
  (while sleep "$INTERVAL"; do curl -s -o /dev/null "http://127.0.0.1:$NE_PORT/metrics"; done) &
  SCRAPER=$!
fi
ne_scrapes() {
  curl -s "http://127.0.0.1:$NE_PORT/metrics" | awk '/^promhttp_metric_handler_requests_total\{code="200"\}/ {print $2}'
}
ticks_per_second=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/${1:-$AGENT}/stat"; }
# Warm up 10 cycles (connections, topic creation, first allocations), then measure.
sleep $((INTERVAL * 10))
start_ticks=$(cpu_ticks)
[ -z "$NE" ] || { ne_start_ticks=$(cpu_ticks "$NE"); ne_start_scrapes=$(ne_scrapes); }
start_cycles=$(curl -s "http://127.0.0.1:$LISTEN/metrics" | awk '/^agent_collection_duration_seconds_count/ {print $2}')
sleep $((INTERVAL * CYCLES))
end_ticks=$(cpu_ticks)
[ -z "$NE" ] || { ne_end_ticks=$(cpu_ticks "$NE"); ne_end_scrapes=$(ne_scrapes); }
metrics=$(curl -s "http://127.0.0.1:$LISTEN/metrics")
end_cycles=$(echo "$metrics" | awk '/^agent_collection_duration_seconds_count/ {print $2}')
collect_sum=$(echo "$metrics" | awk '/^agent_collection_duration_seconds_sum/ {print $2}')
sent=$(echo "$metrics" | awk '/^agent_batches_sent_total/ {print $2}')
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$AGENT/status")
hwm_kb=$(awk '/VmHWM/ {print $2}' "/proc/$AGENT/status")
cycles=$((end_cycles - start_cycles))
awk -v t="$((end_ticks - start_ticks))" -v hz="$ticks_per_second" -v c="$cycles" -v sum="$collect_sum" \
  -v total="$end_cycles" -v rss="$rss_kb" -v hwm="$hwm_kb" -v sent="$sent" 'BEGIN {
  printf "cycles measured: %d (interval '"$INTERVAL"'s), batches sent: %d\n", c, sent
  printf "process CPU per cycle (collect + encode + publish + runtime): %.2f ms\n", 1000 * t / hz / c
  printf "collection wall time per cycle (histogram mean): %.2f ms\n", 1000 * sum / total
  printf "resident memory: %.2f MB now, %.2f MB peak\n", rss / 1024, hwm / 1024 }'
series=$(echo "$metrics" | grep -v '^#' | grep -cv '^agent_\|^process_')
echo "series per cycle: $series"
if [ -n "$NE" ]; then
  # Each reading of the request counter is a scrape too: one of the two falls inside the window.
  awk -v t="$((end_ticks - start_ticks))" -v c="$cycles" -v hz="$ticks_per_second" \
    -v nt="$((ne_end_ticks - ne_start_ticks))" -v s="$((ne_end_scrapes - ne_start_scrapes))" \
    -v rss="$(awk '/VmRSS/ {print $2}' "/proc/$NE/status")" 'BEGIN {
    agent = 1000 * t / hz / c; ne = 1000 * nt / hz / s
    printf "node_exporter, same run: %.2f ms of CPU per scrape (%d scrapes), %.2f MB resident\n", ne, s, rss / 1024
    printf "agent CPU per cycle / node_exporter CPU per scrape: %.2f (budget 0.3)\n", agent / ne }'
  echo "node_exporter series per scrape: $(curl -s "http://127.0.0.1:$NE_PORT/metrics" | grep -v '^#' | grep -cv '^go_\|^process_\|^promhttp_')"
fi
print_span_counts "http://127.0.0.1:$LISTEN/metrics"
