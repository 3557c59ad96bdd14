#!/usr/bin/env bash
# Creates every Secret GoMon's deployment reads, in the namespace `monitoring`:
#   postgres                 postgres-password             PostgreSQL superuser `postgres`: administration only
#                            alerting-password             role alerting_service, owner of the database alerting
#   postgres-tls             ca.crt, tls.crt, tls.key      a CA and PostgreSQL's server certificate (postgres,
#                                                          postgres.<ns>.svc[.cluster.local]); the alerting pods
#                                                          mount ca.crt only
#   gomon-alerting           database-url                  postgres://alerting_service:<password>@postgres.<ns>.svc:
#                                                          5432/alerting?sslmode=verify-full&sslrootcert=<ca.crt>
#                            tokens.yaml                   API tokens: grafana (read) and oncall (write), generated
#                            slack-bot-token               $SLACK_BOT_TOKEN (xoxb-...)
#   grafana                  admin-password                Grafana's admin password (generated)
#   grafana-slack-secret     webhook-url                   $SLACK_WEBHOOK_URL, Grafana's contact point slack-webhook
#   kafka-tls                ca.crt, tls.crt, tls.key      a CA and the brokers' certificate (generated, 10 years)
# Every certificate is generated (10 years, RSA 3072, PKCS#8 keys); the CA keys are not kept.
#
#   SLACK_BOT_TOKEN=xoxb-... SLACK_WEBHOOK_URL=https://hooks.slack.com/services/... deploy/create-secrets.sh
#
# A Secret that already exists is left as it is (PostgreSQL keeps the passwords it was initialised with), so the
# script can be run again; delete a Secret to have it made anew. Needs kubectl and openssl.
# With GOMON_SECRETS_DIR=<dir> nothing is sent to a cluster: the Secrets are written there as YAML files.
set -euo pipefail

namespace=${GOMON_NAMESPACE:-monitoring}
out_dir=${GOMON_SECRETS_DIR:-}
: "${SLACK_BOT_TOKEN:?set SLACK_BOT_TOKEN to the Slack bot token (xoxb-...) the alerting service posts with}"
: "${SLACK_WEBHOOK_URL:?set SLACK_WEBHOOK_URL to the Slack incoming webhook URL Grafana notifies}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

random() { openssl rand -hex 24; }

exists() {
  [ -z "$out_dir" ] && kubectl get secret "$1" -n "$namespace" >/dev/null 2>&1
}

# create NAME ARGS...: kubectl create secret generic NAME ARGS..., applied, or written to $out_dir.
create() {
  local name=$1
  shift
  if exists "$name"; then
    echo "secret/$name exists, left unchanged"
    return
  fi
  if [ -n "$out_dir" ]; then
    kubectl create secret generic "$name" -n "$namespace" "$@" --dry-run=client -o yaml >"$out_dir/$name.yaml"
    echo "secret/$name written to $out_dir/$name.yaml"
  else
    kubectl create secret generic "$name" -n "$namespace" "$@"
  fi
}

# ca PATH CN: a self-signed CA, PATH.crt and PATH.key.
ca() {
  openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=$2" -keyout "$1.key" -out "$1.crt" \
    -addext "basicConstraints = critical, CA:TRUE, pathlen:0" -addext "keyUsage = critical, keyCertSign, cRLSign" \
    2>/dev/null
}

# cert CA PATH CN USAGES [SANS]: a key (PKCS#8 PEM, unencrypted) and a certificate signed by CA (CA.crt, CA.key),
# PATH.key and PATH.crt, subject CN=CN only, with the extended key usages USAGES and the subjectAltNames SANS.
cert() {
  local ca=$1 path=$2 cn=$3 usages=$4 sans=${5:-}
  openssl req -newkey rsa:3072 -nodes -subj "/CN=$cn" -keyout "$path.key" -out "$path.csr" 2>/dev/null
  {
    echo "basicConstraints = critical, CA:FALSE"
    echo "keyUsage = critical, digitalSignature, keyEncipherment"
    echo "extendedKeyUsage = $usages"
    [ -z "$sans" ] || echo "subjectAltName = $sans"
  } >"$path.ext"
  openssl x509 -req -in "$path.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -days 3650 \
    -extfile "$path.ext" -out "$path.crt" 2>/dev/null
}

if [ -z "$out_dir" ]; then
  kubectl get namespace "$namespace" >/dev/null 2>&1 || kubectl create namespace "$namespace"
else
  mkdir -p "$out_dir"
fi

# PostgreSQL: the passwords are read back when the Secret exists, so the alerting URL always matches.
if exists postgres; then
  superuser_password=$(kubectl get secret postgres -n "$namespace" -o jsonpath='{.data.postgres-password}' | base64 -d)
  db_password=$(kubectl get secret postgres -n "$namespace" -o jsonpath='{.data.alerting-password}' | base64 -d)
  if [ -z "$superuser_password" ] || [ -z "$db_password" ]; then
    echo "secret/postgres lacks postgres-password or alerting-password (made by an older version): see" \
      "docs/deploy.md, PostgreSQL" >&2
    exit 1
  fi
else
  superuser_password=$(random)
  db_password=$(random)
fi
create postgres --from-literal=postgres-password="$superuser_password" --from-literal=alerting-password="$db_password"

# PostgreSQL's server certificate, from a CA of its own; the alerting service verifies it (sslmode=verify-full).
pg_ca_in_pod=/etc/gomon/postgres-tls/ca.crt
if ! exists postgres-tls; then
  ca "$work/postgres-ca" gomon-postgres-ca
  cert "$work/postgres-ca" "$work/postgres" "postgres.${namespace}.svc" serverAuth \
    "DNS:postgres, DNS:postgres.${namespace}.svc, DNS:postgres.${namespace}.svc.cluster.local"
  create postgres-tls --from-file=ca.crt="$work/postgres-ca.crt" --from-file=tls.crt="$work/postgres.crt" \
    --from-file=tls.key="$work/postgres.key"
else
  echo "secret/postgres-tls exists, left unchanged"
fi

cat >"$work/tokens.yaml" <<TOKENS
- name: grafana
  token: $(random)
  access: read
- name: rule-engines
  token: $(random)
  access: ingest
- name: oncall
  token: $(random)
  access: operate
- name: admin
  token: $(random)
  access: admin
TOKENS
printf '%s' "postgres://alerting_service:${db_password}@postgres.${namespace}.svc:5432/alerting?sslmode=verify-full&sslrootcert=${pg_ca_in_pod}" \
  >"$work/database-url"
printf '%s' "$SLACK_BOT_TOKEN" >"$work/slack-bot-token"
create gomon-alerting \
  --from-file=database-url="$work/database-url" \
  --from-file=tokens.yaml="$work/tokens.yaml" \
  --from-file=slack-bot-token="$work/slack-bot-token"

create grafana --from-literal=admin-password="$(random)"
create grafana-slack-secret --from-literal=webhook-url="$SLACK_WEBHOOK_URL"

# Kafka: a private CA, and one certificate for the three brokers (PKCS#8 key, as Kafka's PEM key store needs).
headless="kafka-headless.${namespace}.svc"
openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=gomon-kafka-ca" \
  -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -newkey rsa:3072 -nodes -subj "/CN=kafka.${namespace}.svc" \
  -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
cat >"$work/san.ext" <<SAN
subjectAltName = DNS:*.${headless}.cluster.local, DNS:*.${headless}, DNS:kafka.${namespace}.svc.cluster.local, DNS:kafka.${namespace}.svc, DNS:kafka
extendedKeyUsage = serverAuth, clientAuth
SAN
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial -days 3650 \
  -extfile "$work/san.ext" -out "$work/tls.crt" 2>/dev/null
create kafka-tls \
  --from-file=ca.crt="$work/ca.crt" --from-file=tls.crt="$work/tls.crt" --from-file=tls.key="$work/tls.key"

echo "API tokens: kubectl get secret gomon-alerting -n $namespace -o jsonpath='{.data.tokens\\.yaml}' | base64 -d"
