#!/usr/bin/env bash
# Creates every Secret GoMon's deployment reads, in the namespace `monitoring`:
#   postgres                 postgres-password             PostgreSQL superuser `postgres`: administration only
#                            alerting-password             role alerting_service, owner of the database alerting
#   postgres-tls             ca.crt, tls.crt, tls.key      a CA and PostgreSQL's server certificate (postgres,
#                                                          postgres.<ns>.svc[.cluster.local]); the alerting pods
#                                                          mount ca.crt only
#   gomon-alerting           database-url                  postgres://alerting_service:<password>@postgres.<ns>.svc:
#                                                          5432/alerting?sslmode=verify-full&sslrootcert=<ca.crt>
#                            tokens.yaml                   API tokens, generated: grafana (operate), rule-engines
#                                                          (ingest), oncall (operate), admin (admin)
#                            grafana-token                 the grafana token of tokens.yaml, for Grafana's
#                                                          Alertmanager data source (GOMON_ALERTING_TOKEN)
#                            slack-bot-token               $SLACK_BOT_TOKEN (xoxb-...)
#   grafana                  admin-password                Grafana's admin password (generated)
#   grafana-slack-secret     webhook-url                   $SLACK_WEBHOOK_URL, Grafana's contact point slack-webhook
#   gomon-ingress-auth       auth, user, password          the production ingress's basic authentication in front
#                                                          of VictoriaMetrics, Jaeger and Kibana (htpasswd)
#   kafka-tls                ca.crt, tls.crt, tls.key      the Kafka CA and the brokers' certificate (CN
#                                                          gomon-kafka-broker, a super user)
#   kafka-client-agent       ca.crt, tls.crt, tls.key      client certificate CN gomon-agent (Kafka principal
#   kafka-client-aggregator                                User:gomon-agent), and CN gomon-aggregator
#   kafka-admin              ca.crt, tls.crt, tls.key      CN gomon-kafka-admin, a super user: the kafka-setup Job
#                                                          creates the topics and the ACLs with it
# Every certificate is generated (10 years, RSA 3072, PKCS#8 keys); the CA keys are not kept.
#
#   SLACK_BOT_TOKEN=xoxb-... SLACK_WEBHOOK_URL=https://hooks.slack.com/services/... deploy/create-secrets.sh
#
# A Secret that already exists is left as it is (PostgreSQL keeps the passwords it was initialised with), so the
# script can be run again; delete a Secret to have it made anew. The four Kafka Secrets are made together, from one
# CA: delete all of them or none. Needs kubectl and openssl.
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

# The four Kafka Secrets come from one CA (whose key is not kept): all exist, or none. Checked before making anything.
kafka_secrets=(kafka-tls kafka-client-agent kafka-client-aggregator kafka-admin)
kafka_present=()
for name in "${kafka_secrets[@]}"; do
  if exists "$name"; then kafka_present+=("$name"); fi
done
if [ "${#kafka_present[@]}" != 0 ] && [ "${#kafka_present[@]}" != "${#kafka_secrets[@]}" ]; then
  echo "the Kafka Secrets are made together from one CA, but only ${kafka_present[*]} exist:" \
    "delete them (kubectl delete secret -n $namespace ${kafka_present[*]}) and run this again" >&2
  exit 1
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
printf '%s' "postgres://alerting_service:${db_password}@postgres.${namespace}.svc:5432/alerting?sslmode=verify-full&sslrootcert=${pg_ca_in_pod}" \
  >"$work/database-url"
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

# Kafka: a private CA, the brokers' certificate and one client certificate per client (PKCS#8 keys, as Kafka's
# PEM key store needs). The brokers map a certificate's CN to the principal User:<CN> (ssl.principal.mapping.rules
# in config/kafka-start.sh), which the ACLs of config/kafka-acls.txt name.
if [ "${#kafka_present[@]}" = "${#kafka_secrets[@]}" ]; then
  echo "secret/kafka-tls, kafka-client-agent, kafka-client-aggregator and kafka-admin exist, left unchanged"
else
  headless="kafka-headless.${namespace}.svc"
  ca "$work/kafka-ca" gomon-kafka-ca
  # The brokers' certificate serves the listeners and authenticates them to each other (inter-broker, controller).
  cert "$work/kafka-ca" "$work/kafka-broker" gomon-kafka-broker serverAuth,clientAuth \
    "DNS:*.${headless}.cluster.local, DNS:*.${headless}, DNS:kafka.${namespace}.svc.cluster.local, DNS:kafka.${namespace}.svc, DNS:kafka"
  create kafka-tls --from-file=ca.crt="$work/kafka-ca.crt" --from-file=tls.crt="$work/kafka-broker.crt" \
    --from-file=tls.key="$work/kafka-broker.key"
  for client in agent:kafka-client-agent:gomon-agent aggregator:kafka-client-aggregator:gomon-aggregator \
    admin:kafka-admin:gomon-kafka-admin; do
    IFS=: read -r file secret cn <<<"$client"
    cert "$work/kafka-ca" "$work/kafka-$file" "$cn" clientAuth
    create "$secret" --from-file=ca.crt="$work/kafka-ca.crt" --from-file=tls.crt="$work/kafka-$file.crt" \
      --from-file=tls.key="$work/kafka-$file.key"
  done
fi

echo "API tokens: kubectl get secret gomon-alerting -n $namespace -o jsonpath='{.data.tokens\\.yaml}' | base64 -d"
echo "Ingress password (user gomon): kubectl get secret gomon-ingress-auth -n $namespace -o jsonpath='{.data.password}' | base64 -d"
