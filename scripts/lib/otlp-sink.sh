# shellcheck shell=bash
# Sourced by the benchmarks. With TRACES=1, the measured process exports its spans to a stand-in
# OTLP/HTTP collector (otlp-sink.py) on a free port.

SINK=

# TRACES=1: starts the sink, sets SINK to its pid and points OTEL_EXPORTER_OTLP_ENDPOINT at it. Needs free_port.
start_otlp_sink() {
  [ "${TRACES:-0}" = 1 ] || return 0
  local port
  port=$(free_port)
  python3 scripts/lib/otlp-sink.py "$port" &
  SINK=$!
  export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$port
}

# TRACES=1: prints the exporter's counters from the /metrics page at $1.
print_span_counts() {
  [ "${TRACES:-0}" = 1 ] || return 0
  curl -s "$1" | awk '/^gomon_trace_spans_(exported|dropped)_total/ {print "spans: " $0}'
}
