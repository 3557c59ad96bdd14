#!/bin/sh
# The kafka-setup Job: creates GoMon's topics (kafka-topics.txt) and the ACLs of its clients (kafka-acls.txt) as
# the admin principal User:gomon-kafka-admin (a super user), with the certificate of the Secret `kafka-admin`.
# Idempotent: a topic or ACL that exists is left as it is (an ACL removed from kafka-acls.txt is not removed from
# the cluster: `kafka-acls.sh --remove` it). Waits up to 10 minutes for the brokers.
set -eu
bin="${KAFKA_BIN:-/opt/kafka/bin}"
setup="${KAFKA_SETUP_DIR:-/etc/kafka/setup}"
tls="${KAFKA_TLS_DIR:-/etc/kafka/admin-tls}"
work="${KAFKA_WORK_DIR:-/tmp/kafka-setup}"
bootstrap="${KAFKA_BOOTSTRAP:-kafka:9092}"
mkdir -p "$work"
cat "$tls/tls.key" "$tls/tls.crt" > "$work/keystore.pem"
cat > "$work/admin.properties" <<PROPERTIES
security.protocol=SSL
ssl.keystore.type=PEM
ssl.keystore.location=${work}/keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=${tls}/ca.crt
PROPERTIES
admin="--bootstrap-server $bootstrap --command-config $work/admin.properties"

tries=0
until "$bin/kafka-broker-api-versions.sh" $admin >/dev/null 2>"$work/wait.log"; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then
    echo "kafka-setup: the brokers at $bootstrap did not answer within 10 minutes:" >&2
    tail -n 20 "$work/wait.log" >&2
    exit 1
  fi
  sleep 10
done

# The data lines of a file: comments and blank lines dropped.
lines() { sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$1"; }

lines "$setup/kafka-topics.txt" > "$work/topics"
while read -r topic partitions replication; do
  "$bin/kafka-topics.sh" $admin --create --if-not-exists --topic "$topic" --partitions "$partitions" \
    --replication-factor "$replication" </dev/null
done < "$work/topics"

lines "$setup/kafka-acls.txt" > "$work/acls"
while read -r principal operation resource name; do
  "$bin/kafka-acls.sh" $admin --add --allow-principal "$principal" --operation "$operation" \
    --resource-pattern-type literal "--$resource" "$name" </dev/null
done < "$work/acls"
"$bin/kafka-acls.sh" $admin --list
