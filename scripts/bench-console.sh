#!/usr/bin/env bash
# The console under load: `gomon alerting` (release build) on a throw-away PostgreSQL with OPEN open alerts (default
# 10,000), the alerts page loaded RUNS times (default 5) in headless Chromium. Prints the time to the first rows
# drawn and to DOM interactive, one refresh's API calls, and the assets' weight. Targets: under 1 s, under 300 KB.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || missing+=(postgresql)
. scripts/lib/install.sh
install_packages bench-console.sh "${missing[@]}"
. scripts/lib/postgres.sh
trap stop_postgres EXIT
start_postgres
psql "$TEST_POSTGRES_URL/postgres" -qc "CREATE DATABASE bench_console"
cargo build --release -q -p gomon
BENCH_GOMON_BINARY="$PWD/target/release/gomon" BENCH_DATABASE_URL="$TEST_POSTGRES_URL/bench_console" \
  cargo bench -q -p gomon --bench console
