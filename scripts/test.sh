#!/usr/bin/env bash
# The test command. On a fresh machine it installs what the tests need (as root), starts the services they use
# (PostgreSQL on a free port in a temporary directory), then runs the format and lint checks and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || missing+=(postgresql)
command -v promtool >/dev/null || missing+=(prometheus)
command -v victoria-metrics >/dev/null || missing+=(victoria-metrics)
command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
command -v python3 >/dev/null || missing+=(python3)
command -v make >/dev/null || missing+=(make)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v stunnel >/dev/null || missing+=(stunnel4)   # TLS in front of tansu in the Kafka TLS tests
[ -x /usr/bin/chromium ] || missing+=(chromium)           # the console's tests drive a real browser
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
dpkg -s python3-aiosmtpd >/dev/null 2>&1 || missing+=(python3-aiosmtpd)   # the real SMTP server of the email tests
. scripts/lib/install.sh
install_packages test.sh "${missing[@]}"
# The Debian package may start a cluster of its own; the tests use their own server and leave it alone.

# The Kafka-protocol broker the agent's and the aggregator's tests use (an eight-minute build, done once per machine).
install_tansu test.sh
install_cargo_deny test.sh

. scripts/lib/postgres.sh
trap stop_postgres EXIT
start_postgres

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The dependency policy of deny.toml: licences, banned and duplicate crates, sources.
cargo deny --log-level error check --hide-inclusion-graph --show-stats licenses bans sources
# Advisories need the RustSec database from github.com, which not every machine reaches.
if timeout 120 cargo deny fetch db >/dev/null 2>&1; then
  cargo deny --offline check --show-stats advisories
else
  echo "test.sh: advisories NOT checked: the RustSec advisory database (github.com) cannot be fetched from here"
fi
cargo test --workspace 2>&1 | tee target/test-output.log
# cargo test's own summary is per test binary; print one line for the whole run.
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     END { printf "tests: %d passed, %d failed\n", passed, failed; if (ignored > 0) exit 1 }' \
  target/test-output.log
scripts/check-deploy.sh   # deploy/: manifests, provisioning, rules, Terraform; PromQL against VictoriaMetrics fed by gomon
scripts/check-node-mixin.sh   # node_exporter's mixin: every alert and recording rule with data on node_exporter's side has data on GoMon's
