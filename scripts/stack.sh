#!/usr/bin/env bash
# GoMon in its production shape on one machine: real PostgreSQL, VictoriaMetrics, vmalert and a Kafka-protocol
# broker (tansu), with `gomon agent`, `gomon aggregator` and `gomon alerting` as separate processes against them,
# all on free 127.0.0.1 ports in a temporary directory. Prints what runs where; Ctrl-C stops everything.
#
#   scripts/stack.sh
#
# Installs what is missing when run as root (postgresql, victoria-metrics with vmalert, curl, python3, make,
# libssl-dev; tansu with cargo, an eight-minute build once per machine), otherwise says what to install.
# Every GOMON_... variable of the environment reaches the three programs (a Slack webhook, say:
# GOMON_ALERTING__SLACK__WEBHOOK_URL=https://hooks.slack.com/services/... scripts/stack.sh); the script sets their
# addresses, the brokers, the database and the remote write URL, and the agent's interval to 5s unless
# GOMON_AGENT__INTERVAL is set. STACK_KEEP=1 keeps the directory with the logs and data after the stop.
#
# vmalert evaluates deploy/vmalert/rules.yml against VictoriaMetrics. `gomon alerting` has no
# Alertmanager-compatible endpoint yet, so vmalert's notifications go to a small receiver that logs them
# (notifier.log); the Debian vmalert is too old for -notifier.blackhole.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  "") ;;
  *)
    echo "stack.sh: no arguments expected (see --help)" >&2
    exit 2
    ;;
esac

. scripts/lib/install.sh
. scripts/lib/postgres.sh

command -v cargo >/dev/null || {
  echo "stack.sh: cargo is needed to build gomon (https://rustup.rs)" >&2
  exit 1
}
missing=()
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || missing+=(postgresql)
if ! command -v victoria-metrics >/dev/null || ! command -v vmalert >/dev/null; then
  missing+=(victoria-metrics)
fi
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
command -v make >/dev/null || missing+=(make)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
install_packages stack.sh "${missing[@]}"
install_tansu stack.sh

echo "stack.sh: building gomon (release)"
cargo build --release --quiet -p gomon
gomon=$PWD/target/release/gomon

dir=$(mktemp -d /tmp/gomon-stack.XXXXXX)
names=()
pids=()

cleanup() {
  trap - EXIT INT TERM
  local i
  if [ ${#pids[@]} -gt 0 ]; then
    echo
    echo "stack.sh: stopping"
  fi
  # In reverse order of start: the agent first, the stores last, so that what is in flight lands.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || continue
    for _ in $(seq 1 150); do
      kill -0 "${pids[i]}" 2>/dev/null || break
      sleep 0.1
    done
    if kill -KILL "${pids[i]}" 2>/dev/null; then
      echo "stack.sh: ${names[i]} did not stop within 15 s of SIGTERM and was killed" >&2
    fi
    wait "${pids[i]}" 2>/dev/null || true
  done
  stop_postgres
  if [ -n "${STACK_KEEP:-}" ]; then
    echo "stack.sh: logs and data kept in $dir"
  else
    rm -rf "$dir"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME COMMAND...: runs the command in its own session (Ctrl-C reaches only this script, which stops the
# programs in order), output in $dir/NAME.log.
start() {
  local name=$1
  shift
  setsid "$@" >"$dir/$name.log" 2>&1 </dev/null &
  names+=("$name")
  pids+=($!)
}

log_tail() {
  echo "--- $dir/$1.log (last 20 lines) ---" >&2
  tail -n 20 "$dir/$1.log" >&2 || true
}

# alive NAME: fails, with the end of its log, if the program has exited.
alive() {
  local i
  for i in "${!names[@]}"; do
    if [ "${names[i]}" = "$1" ] && ! kill -0 "${pids[i]}" 2>/dev/null; then
      echo "stack.sh: $1 exited" >&2
      log_tail "$1"
      return 1
    fi
  done
}

# wait_until NAME WHAT COMMAND...: polls the command for up to 60 s while NAME runs.
wait_until() {
  local name=$1 what=$2
  shift 2
  for _ in $(seq 1 600); do
    "$@" >/dev/null 2>&1 && return 0
    alive "$name" || exit 1
    sleep 0.1
  done
  echo "stack.sh: $name: $what not within 60 s" >&2
  log_tail "$name"
  exit 1
}

http_ok() { curl -sf -o /dev/null "$1"; }
listening() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

vm_port=$(free_port)
vmalert_port=$(free_port)
notifier_port=$(free_port)
kafka_port=$(free_port)
api_port=$(free_port)
agent_port=$(free_port)
aggregator_port=$(free_port)
vm=http://127.0.0.1:$vm_port
vmalert=http://127.0.0.1:$vmalert_port
api=http://127.0.0.1:$api_port
agent=http://127.0.0.1:$agent_port
aggregator=http://127.0.0.1:$aggregator_port
kafka=127.0.0.1:$kafka_port

# PostgreSQL with its default, durable settings.
PG_SETTINGS="" start_postgres
"$PG_BIN/psql" -q "$TEST_POSTGRES_URL/postgres" -c "create database gomon"
database_url=$TEST_POSTGRES_URL/gomon

# VictoriaMetrics: receives the host metrics by remote write from the aggregator, and scrapes the programs' own
# metrics. As in deploy/k8s/infra/scrape.yml, only the agent's own health is scraped from it: its host series
# arrive through Kafka.
cat >"$dir/scrape.yml" <<YAML
global:
  scrape_interval: 15s
scrape_configs:
  - job_name: alerting
    static_configs: [{targets: ["127.0.0.1:$api_port"]}]
  - job_name: aggregator
    static_configs: [{targets: ["127.0.0.1:$aggregator_port"]}]
  - job_name: agent
    static_configs: [{targets: ["127.0.0.1:$agent_port"]}]
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: "(node|gomon)_.*"
        action: drop
  - job_name: vmalert
    static_configs: [{targets: ["127.0.0.1:$vmalert_port"]}]
YAML
start victoria-metrics victoria-metrics -storageDataPath="$dir/victoria-metrics" \
  -httpListenAddr="127.0.0.1:$vm_port" -dedup.minScrapeInterval=1ms -promscrape.config="$dir/scrape.yml" \
  -loggerLevel=WARN
wait_until victoria-metrics "health" http_ok "$vm/health"

# What vmalert notifies, logged (an Alertmanager's part: /api/v2/alerts).
start notifier python3 -c '
import http.server, json, sys, time

class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            alerts = json.loads(body)
        except ValueError:
            alerts = []
        for alert in alerts if isinstance(alerts, list) else []:
            print(time.strftime("%H:%M:%S"), json.dumps(alert.get("labels", {})),
                  alert.get("annotations", {}).get("summary", ""), "ends", alert.get("endsAt", ""), flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).serve_forever()
' "$notifier_port"
wait_until notifier "listening" listening "$notifier_port"

start vmalert vmalert -rule="$PWD/deploy/vmalert/rules.yml" -datasource.url="$vm" -remoteWrite.url="$vm" \
  -remoteRead.url="$vm" -notifier.url="http://127.0.0.1:$notifier_port" -httpListenAddr="127.0.0.1:$vmalert_port" \
  -loggerLevel=WARN
wait_until vmalert "health" http_ok "$vmalert/health"

start tansu tansu broker --listener-url "tcp://$kafka" --advertised-listener-url "tcp://$kafka" \
  --storage-engine memory://tansu/
wait_until tansu "listening" listening "$kafka_port"
tansu topic create gomon.metrics --partitions 3 --broker "tcp://$kafka" >"$dir/topic.log" 2>&1 || {
  echo "stack.sh: could not create the topic gomon.metrics" >&2
  cat "$dir/topic.log" >&2
  exit 1
}

start alerting env GOMON_ALERTING__LISTEN="127.0.0.1:$api_port" GOMON_ALERTING__DATABASE__URL="$database_url" \
  "$gomon" alerting
wait_until alerting "ready" http_ok "$api/health/ready"

start aggregator env GOMON_AGGREGATOR__LISTEN="127.0.0.1:$aggregator_port" GOMON_AGGREGATOR__KAFKA__BROKERS="$kafka" \
  GOMON_AGGREGATOR__REMOTE_WRITE__URL="$vm/api/v1/write" "$gomon" aggregator
wait_until aggregator "ready" http_ok "$aggregator/health/ready"

start agent env GOMON_AGENT__LISTEN="127.0.0.1:$agent_port" GOMON_AGENT__KAFKA__BROKERS="$kafka" \
  GOMON_AGENT__INTERVAL="${GOMON_AGENT__INTERVAL:-5s}" "$gomon" agent
wait_until agent "ready" http_ok "$agent/health/ready"

row() { printf '  %-18s %-36s %s\n' "$@"; }
echo
echo "GoMon is running in its production shape (logs: $dir/*.log). Ctrl-C stops everything."
echo
row "alerting API" "$api/api/v1/alerts" "metrics: $api/metrics"
row "agent" "$agent/metrics" "this host every ${GOMON_AGENT__INTERVAL:-5s}, to Kafka"
row "aggregator" "$aggregator/metrics" "latest samples: $aggregator/federate"
row "VictoriaMetrics" "$vm/vmui" "queries: $vm/api/v1/query"
row "vmalert" "$vmalert/" "rules: $vmalert/api/v1/rules, metrics: $vmalert/metrics"
row "vmalert notifies" "$dir/notifier.log"
row "tansu (Kafka)" "$kafka" "topic gomon.metrics, 3 partitions"
row "PostgreSQL" "$database_url"
cat <<EOF

Try:
  curl -s -X POST $api/api/v1/alerts -H 'Content-Type: application/json' \\
    -d '{"source":"api","severity":"P2","title":"Database Connection Slow"}'
  curl -s $api/api/v1/alerts | jq
  curl -s $vm/api/v1/query --data-urlencode 'query=gomon_cpu_usage_percent{cpu=""}' | jq '.data.result'
  curl -s $vm/api/v1/query --data-urlencode 'query=node_memory_MemTotal_bytes' | jq '.data.result'
  curl -s $vmalert/api/v1/rules | jq -r '.data.groups[].rules[] | "\\(.name): \\(.state)"'
  curl -s $aggregator/metrics | grep -E '^aggregator_(samples_written_total|consumer_lag)'
EOF

# Until Ctrl-C, or until a program stops by itself.
while :; do
  for name in "${names[@]}"; do
    alive "$name" || exit 1
  done
  sleep 1
done
