#!/usr/bin/env bash
# End-to-end benchmark of `gomon aggregator` (release build) between a tansu broker and VictoriaMetrics:
#   1. throughput: a backlog of BATCHES batches of SAMPLES samples is published first, then the aggregator drains
#      it into VictoriaMetrics; samples per second from its start to the last sample accepted.
#   2. latency: RATE batches per second, stamped when published, for SECONDS seconds; p50/p99 of
#      aggregator_pipeline_latency_seconds (publish -> accepted by VictoriaMetrics), interpolated in its buckets.
# Also the aggregator's CPU time and resident memory. The decode + transform + encode rate per core alone is
# `cargo bench -p gomon-aggregator --bench transform`. TRACES=1 exports spans to a local OTLP/HTTP sink (a processing
# span per batch, a remote write span per request).
set -euo pipefail
cd "$(dirname "$0")/.."
BATCHES=${BATCHES:-4000}
SAMPLES=${SAMPLES:-250}
RATE=${RATE:-100}
SECONDS_STEADY=${SECONDS_STEADY:-30}
for program in tansu victoria-metrics curl; do
  command -v "$program" >/dev/null || { echo "$program is missing (scripts/test.sh installs it)" >&2; exit 1; }
done
cargo build --release -q -p gomon
cargo build --release -q -p gomon-aggregator --example load
LOAD=target/release/examples/load
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
KAFKA=$(free_port); VM=$(free_port); LISTEN=$(free_port)
DIR=$(mktemp -d)
tansu broker --listener-url "tcp://127.0.0.1:$KAFKA" --advertised-listener-url "tcp://127.0.0.1:$KAFKA" \
  --storage-engine memory://tansu/ >/dev/null 2>&1 &
BROKER=$!
victoria-metrics -storageDataPath="$DIR/vm" -httpListenAddr="127.0.0.1:$VM" -dedup.minScrapeInterval=1ms \
  >"$DIR/vm.log" 2>&1 &
VMPID=$!
AGG=
. scripts/lib/otlp-sink.sh
# The aggregator first, so that it can flush its spans to the sink.
trap 'kill $AGG 2>/dev/null; wait $AGG 2>/dev/null; kill $BROKER $VMPID $SINK 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"' EXIT
start_otlp_sink
sleep 1
tansu topic create gomon.metrics --partitions 4 --broker "tcp://127.0.0.1:$KAFKA" >/dev/null
metric() { curl -s "http://127.0.0.1:$LISTEN/metrics" | awk -v name="$1" '$1 == name {print $2}'; }

echo "publishing a backlog of $BATCHES batches x $SAMPLES samples"
"$LOAD" "127.0.0.1:$KAFKA" gomon.metrics 100 "$SAMPLES" "$BATCHES" 0
total=$((BATCHES * SAMPLES))
start_ns=$(date +%s%N)
GOMON_LOG=warn GOMON_AGGREGATOR__LISTEN=127.0.0.1:$LISTEN GOMON_AGGREGATOR__KAFKA__BROKERS=127.0.0.1:$KAFKA \
  GOMON_AGGREGATOR__REMOTE_WRITE__URL=http://127.0.0.1:$VM/api/v1/write target/release/gomon aggregator &
AGG=$!
until [ "$(metric aggregator_samples_written_total || echo 0)" = "$total" ] 2>/dev/null; do
  written=$(metric aggregator_samples_written_total || true)
  if [ -n "$written" ] && [ "${written%.*}" -gt "$total" ]; then break; fi
  sleep 0.1
done
end_ns=$(date +%s%N)
ticks=$(awk '{print $14 + $15}' "/proc/$AGG/stat")
hz=$(getconf CLK_TCK)
awk -v n="$total" -v ns="$((end_ns - start_ns))" -v t="$ticks" -v hz="$hz" 'BEGIN {
  printf "throughput: %d samples in %.2f s = %.0f samples/s end to end; aggregator CPU %.2f s (%.0f samples per CPU second)\n",
    n, ns / 1e9, n / (ns / 1e9), t / hz, n / (t / hz) }'

echo "steady load: $RATE batches/s x $SAMPLES samples for ${SECONDS_STEADY}s"
before=$(curl -s "http://127.0.0.1:$LISTEN/metrics" | grep '^aggregator_pipeline_latency_seconds_bucket')
"$LOAD" "127.0.0.1:$KAFKA" gomon.metrics 100 "$SAMPLES" "$((RATE * SECONDS_STEADY))" "$RATE"
sleep 2
after=$(curl -s "http://127.0.0.1:$LISTEN/metrics" | grep '^aggregator_pipeline_latency_seconds_bucket')
paste <(echo "$before") <(echo "$after") | awk '{
    match($1, /le="[^"]+"/); le = substr($1, RSTART + 4, RLENGTH - 5)
    bound[NR] = (le == "+Inf") ? 1e9 : le; count[NR] = $4 - $2; n = NR }
  END {
    total = count[n]
    split("0.5 0.99", qs, " ")
    for (i = 1; i <= 2; i++) {
      want = qs[i] * total; previous = 0; low = 0
      for (j = 1; j <= n; j++) {
        if (count[j] >= want) {
          width = count[j] - previous
          value = (width > 0) ? low + (bound[j] - low) * (want - previous) / width : bound[j]
          printf "pipeline latency p%d: %.0f ms\n", qs[i] * 100, value * 1000; break }
        previous = count[j]; low = bound[j] }
    }
    printf "(%d batches measured)\n", total }'
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$AGG/status")
hwm_kb=$(awk '/VmHWM/ {print $2}' "/proc/$AGG/status")
awk -v rss="$rss_kb" -v hwm="$hwm_kb" 'BEGIN { printf "aggregator resident memory: %.1f MB now, %.1f MB peak\n", rss / 1024, hwm / 1024 }'
print_span_counts "http://127.0.0.1:$LISTEN/metrics"
