#!/usr/bin/env bash
# Benchmark of `gomon up` (release build): time from start to a 200 on /health/ready, and resident memory after
# DURATION seconds (default 600) at a 1 s collection interval. Budget: ready within 1 s, <= 40 MB resident.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-600}
cargo build --release -q -p gomon
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
DIR=$(mktemp -d)
UP=
trap 'kill -INT $UP 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"' EXIT
start_ns=$(date +%s%N)
(cd "$DIR" && GOMON_LOG=warn GOMON_AGENT__INTERVAL=1s GOMON_ALERTING__LISTEN=127.0.0.1:$PORT \
  exec "$OLDPWD/target/release/gomon" up 2>/dev/null) &
UP=$!
until curl -sf -o /dev/null "http://127.0.0.1:$PORT/health/ready"; do sleep 0.005; done
ready_ns=$(date +%s%N)
echo "ready after $(( (ready_ns - start_ns) / 1000000 )) ms"
sleep "$DURATION"
batches=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '$1 == "aggregator_messages_consumed_total" {print $2}')
series=$(curl -s "http://127.0.0.1:$PORT/federate" | grep -vc '^#')
ticks=$(awk '{print $14 + $15}' "/proc/$UP/stat")
awk -v rss="$(awk '/VmRSS/ {print $2}' "/proc/$UP/status")" -v hwm="$(awk '/VmHWM/ {print $2}' "/proc/$UP/status")" \
  -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v d="$DURATION" -v b="$batches" -v s="$series" 'BEGIN {
  printf "after %d s: %d batches through the queue, %d host series on /federate\n", d, b, s
  printf "resident memory: %.1f MB now, %.1f MB peak; CPU %.1f%% of a core\n", rss / 1024, hwm / 1024, 100 * t / hz / d }'
