#!/usr/bin/env bash
# Validates deploy/ (see scripts/check_deploy.py): kustomize renders every overlay and the objects validate
# against the Kubernetes schemas; Grafana provisioning, dashboards, vmalert rules, Terraform, ArgoCD and the log
# configuration parse and hang together; every PromQL expression of the dashboards and rules runs against a real
# VictoriaMetrics that scraped the real gomon programs, and every metric it names exists there.
# Installs what it needs when missing (as root): kubectl (kubernetes-client), promtool (prometheus),
# victoria-metrics (with vmalert), openssl, python3-venv; and a Python venv in target/ with kubernetes-validate,
# python-hcl2 and PyYAML. Uses $TEST_POSTGRES_URL when set (scripts/test.sh), else starts its own PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

missing=()
command -v kubectl >/dev/null || missing+=(kubernetes-client)
command -v promtool >/dev/null || missing+=(prometheus)
command -v victoria-metrics >/dev/null || missing+=(victoria-metrics)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || missing+=(postgresql)
. scripts/lib/install.sh
install_packages check-deploy "${missing[@]}"

# kustomize must understand `labels:` (kustomize v4.1+, kubectl 1.21+); Debian's kubernetes-client is older.
kustomize_version=$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v//p')
if [ -z "$kustomize_version" ] || [ "$(printf '%s\n' 4.1.0 "$kustomize_version" | sort -V | head -n 1)" != 4.1.0 ]; then
  echo "check-deploy: kubectl with kustomize 4.1 or later is needed (have: ${kustomize_version:-none})" >&2
  exit 1
fi

venv=target/deploy-check-venv
python_venv check-deploy "$venv" kubernetes-validate==1.37.0 python-hcl2==8.1.4 PyYAML==6.0.4
export PATH="$PWD/$venv/bin:$PATH"

gomon=$(debug_gomon check-deploy)

# A fresh database for the alerting service.
cleanup() {
  if [ -n "${database:-}" ]; then
    "$PG_BIN/psql" -q "$TEST_POSTGRES_URL/postgres" -c "drop database if exists $database" >/dev/null 2>&1 || true
  fi
  [ -n "${own_postgres:-}" ] && stop_postgres
  return 0
}
trap cleanup EXIT
. scripts/lib/postgres.sh
PG_BIN=$(postgres_bin)
if [ -z "${TEST_POSTGRES_URL:-}" ]; then
  own_postgres=1
  start_postgres
fi
database="gomon_deploy_check_$$"
"$PG_BIN/psql" -q "$TEST_POSTGRES_URL/postgres" -c "create database $database" >/dev/null

status=0
python3 scripts/check_deploy.py --gomon "$gomon" --database-url "$TEST_POSTGRES_URL/$database" || status=$?
echo "check-deploy: $( [ $status = 0 ] && echo passed || echo FAILED ) in $(( $(date +%s) - started ))s"
exit $status
