#!/usr/bin/env bash
# node-mixin coverage: the alert and recording rules of node_exporter's own mixin (third_party/node-mixin, compiled
# with jsonnet from PyPI), evaluated against two VictoriaMetrics side by side, one scraping node_exporter (job
# "node", as the mixin expects) and one fed by `gomon up`'s remote write with its default labels. Fails when an
# expression returns data on node_exporter's side and not on GoMon's (scripts/check_node_mixin.py lists the
# exceptions and why). Prints the figures: expressions with data on each side, series per host, CPU per scrape of
# node_exporter against CPU per cycle of gomon up, and resident memory.
# Installs what it needs when missing (as root): prometheus-node-exporter, victoria-metrics, curl, python3-venv;
# and jsonnet in a venv under the target directory. Environment: DURATION (seconds of data, default 180), INTERVAL
# (seconds between scrapes and cycles, default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
DURATION=${DURATION:-180}
INTERVAL=${INTERVAL:-5}
target=${CARGO_TARGET_DIR:-target}

missing=()
command -v prometheus-node-exporter >/dev/null || missing+=(prometheus-node-exporter)
command -v victoria-metrics >/dev/null || missing+=(victoria-metrics)
command -v curl >/dev/null || missing+=(curl)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
. scripts/lib/install.sh
install_packages check-node-mixin "${missing[@]}"

venv=$target/node-mixin-venv
python_venv check-node-mixin "$venv" jsonnet==0.22.0
gomon=$(debug_gomon check-node-mixin)

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

mixin=$work/mixin.json
"$venv/bin/python" -c 'import _jsonnet, sys; sys.stdout.write(_jsonnet.evaluate_file(sys.argv[1]))' \
  third_party/node-mixin/rules-and-alerts.jsonnet >"$mixin"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() {
  for _ in $(seq 100); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "check-node-mixin: $1 does not answer" >&2
  return 1
}
NE=$(free_port)
VM_NE=$(free_port)
VM_GOMON=$(free_port)
UP=$(free_port)

# node_exporter with its defaults (as packaged), and a VictoriaMetrics scraping it as job "node".
prometheus-node-exporter --web.listen-address="127.0.0.1:$NE" >"$work/node-exporter.log" 2>&1 &
pids+=($!)
ne_pid=$!
cat >"$work/scrape.yml" <<YAML
scrape_configs:
  - job_name: node
    scrape_interval: ${INTERVAL}s
    static_configs:
      - targets: ["127.0.0.1:$NE"]
YAML
# -search.latencyOffset=0: a query sees the samples just written (the default hides the last 30 s).
victoria-metrics -httpListenAddr="127.0.0.1:$VM_NE" -storageDataPath="$work/vm-ne" -promscrape.config="$work/scrape.yml" \
  -search.latencyOffset=0s -loggerLevel=ERROR >"$work/vm-ne.log" 2>&1 &
pids+=($!)
victoria-metrics -httpListenAddr="127.0.0.1:$VM_GOMON" -storageDataPath="$work/vm-gomon" \
  -search.latencyOffset=0s -loggerLevel=ERROR >"$work/vm-gomon.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$VM_NE/health"
wait_http "http://127.0.0.1:$VM_GOMON/health"

# gomon up with its defaults (job="node", instance = the host name), writing to the second VictoriaMetrics; an
# external label given as a YAML map in its variable, as docs/configuration.md says maps may be.
GOMON_AGGREGATOR__EXTERNAL_LABELS='{cluster: node-mixin-check}' GOMON_LOG=warn GOMON_LOG_FORMAT=json GOMON_AGENT__INTERVAL=${INTERVAL}s GOMON_ALERTING__LISTEN="127.0.0.1:$UP" \
  GOMON_ALERTING__DATABASE__DATA_DIR="$work/gomon-data" \
  GOMON_AGGREGATOR__REMOTE_WRITE__URL="http://127.0.0.1:$VM_GOMON/api/v1/write" \
  "$gomon" up >"$work/gomon.log" 2>&1 &
pids+=($!)
up_pid=$!
wait_http "http://127.0.0.1:$UP/health/ready"
wait_http "http://127.0.0.1:$NE/metrics"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cycles() { curl -s "http://127.0.0.1:$UP/metrics" | awk '/^agent_collection_duration_seconds_count/ {print $2}'; }
scrapes() {
  curl -s "http://127.0.0.1:$NE/metrics" | awk '/^promhttp_metric_handler_requests_total\{code="200"\}/ {print $2}'
}
# One interval of warm-up, then DURATION seconds measured.
sleep "$INTERVAL"
ne_start=$(ticks "$ne_pid") up_start=$(ticks "$up_pid") cycles_start=$(cycles) scrapes_start=$(scrapes)
echo "check-node-mixin: collecting for ${DURATION}s at ${INTERVAL}s"
sleep "$DURATION"
ne_end=$(ticks "$ne_pid") up_end=$(ticks "$up_pid") cycles_end=$(cycles) scrapes_end=$(scrapes)
metrics=$(curl -s "http://127.0.0.1:$UP/metrics")
collect_sum=$(echo "$metrics" | awk '/^agent_collection_duration_seconds_sum/ {print $2}')
figures=$(awk -v hz="$(getconf CLK_TCK)" -v ne="$((ne_end - ne_start))" -v up="$((up_end - up_start))" \
  -v c="$((cycles_end - cycles_start))" -v total="$cycles_end" -v sum="$collect_sum" \
  -v s="$(awk -v a="$scrapes_start" -v b="$scrapes_end" 'BEGIN { print b - a - 1 }')" \
  -v ne_rss="$(awk '/VmRSS/ {print $2}' "/proc/$ne_pid/status")" \
  -v up_rss="$(awk '/VmRSS/ {print $2}' "/proc/$up_pid/status")" 'BEGIN {
  ne_ms = 1000 * ne / hz / s; up_ms = 1000 * up / hz / c
  printf "{\"node_exporter CPU per scrape\": \"%.2f ms (%d scrapes)\", ", ne_ms, s
  printf "\"gomon up CPU per cycle (agent, aggregator, alerting: an upper bound of the agent)\": \"%.2f ms (%d cycles), %.2f of node_exporter per scrape\", ", up_ms, c, up_ms / ne_ms
  printf "\"agent collection wall time per cycle\": \"%.2f ms\", ", 1000 * sum / total
  printf "\"resident memory\": \"node_exporter %.1f MB, gomon up %.1f MB\"}", ne_rss / 1024, up_rss / 1024 }')

status=0
"$venv/bin/python" scripts/check_node_mixin.py --mixin "$mixin" --node-exporter "http://127.0.0.1:$VM_NE" \
  --gomon "http://127.0.0.1:$VM_GOMON" --figures "$figures" || status=$?
if [ $status != 0 ]; then
  echo "--- gomon up's log (last lines)"
  tail -n 20 "$work/gomon.log"
fi
echo "check-node-mixin: $( [ $status = 0 ] && echo passed || echo FAILED ) in $(( $(date +%s) - started ))s"
exit $status
