#!/usr/bin/env bash
# Creates every Secret GoMon's deployment reads, in the namespace `monitoring`:
#   postgres               password                      PostgreSQL password of alerting_service (generated)
#   gomon-alerting         database-url                  postgres://alerting_service:<password>@postgres:5432/alerting
#                          tokens.yaml                   API tokens, generated: grafana (operate), rule-engines
#                                                        (ingest), oncall (operate), admin (admin)
#                          grafana-token                 the grafana token of tokens.yaml, for Grafana's
#                                                        Alertmanager data source (GOMON_ALERTING_TOKEN)
#                          slack-bot-token               $SLACK_BOT_TOKEN (xoxb-...)
#   grafana                admin-password                Grafana's admin password (generated)
#   grafana-slack-secret   webhook-url                   $SLACK_WEBHOOK_URL, Grafana's contact point slack-webhook
#   gomon-ingress-auth     auth, user, password          the production ingress's basic authentication in front of
#                                                        VictoriaMetrics, Jaeger and Kibana (htpasswd; generated)
#   kafka-tls              ca.crt, tls.crt, tls.key      a CA and the brokers' certificate (generated, 10 years)
#
#   SLACK_BOT_TOKEN=xoxb-... SLACK_WEBHOOK_URL=https://hooks.slack.com/services/... deploy/create-secrets.sh
#
# A Secret that already exists is left as it is (PostgreSQL keeps the password it was initialised with), so the
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

if [ -z "$out_dir" ]; then
  kubectl get namespace "$namespace" >/dev/null 2>&1 || kubectl create namespace "$namespace"
else
  mkdir -p "$out_dir"
fi

# PostgreSQL: the password is read back when the Secret exists, so the alerting URL always matches it.
if exists postgres; then
  db_password=$(kubectl get secret postgres -n "$namespace" -o jsonpath='{.data.password}' | base64 -d)
else
  db_password=$(random)
fi
create postgres --from-literal=password="$db_password"

# Grafana's Alertmanager data source lists alerts and sets and expires silences: operate. Its token is also a key
# of its own, which the Grafana container reads; both are made together, so they always match.
grafana_token=$(random)
printf '%s' "$grafana_token" >"$work/grafana-token"
cat >"$work/tokens.yaml" <<TOKENS
- name: grafana
  token: $grafana_token
  access: operate
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
printf '%s' "postgres://alerting_service:${db_password}@postgres:5432/alerting" >"$work/database-url"
printf '%s' "$SLACK_BOT_TOKEN" >"$work/slack-bot-token"
create gomon-alerting \
  --from-file=database-url="$work/database-url" \
  --from-file=tokens.yaml="$work/tokens.yaml" \
  --from-file=grafana-token="$work/grafana-token" \
  --from-file=slack-bot-token="$work/slack-bot-token"

create grafana --from-literal=admin-password="$(random)"
create grafana-slack-secret --from-literal=webhook-url="$SLACK_WEBHOOK_URL"

# The production ingress asks for this user before VictoriaMetrics, Jaeger and Kibana (NGINX reads `auth`).
ingress_password=$(random)
create gomon-ingress-auth --from-literal=user=gomon --from-literal=password="$ingress_password" \
  --from-literal=auth="gomon:$(openssl passwd -apr1 "$ingress_password")"

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
echo "Ingress password (user gomon): kubectl get secret gomon-ingress-auth -n $namespace -o jsonpath='{.data.password}' | base64 -d"
