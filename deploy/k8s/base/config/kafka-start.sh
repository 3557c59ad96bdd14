#!/bin/sh
# Starts one broker of the three-node KRaft cluster (each node is broker and controller). The node id is the
# StatefulSet ordinal; every listener is TLS, with the PEM certificate and key of the Secret `kafka-tls`.
# Every client must present a certificate signed by the same CA (mutual TLS, also between brokers and controllers);
# its principal is User:<CN of the certificate>, and it may do only what an ACL allows (config/kafka-acls.txt,
# applied by the kafka-setup Job): the brokers themselves and the admin that applies the ACLs are super users.
# KAFKA_TLS_DIR, KAFKA_WORK_DIR and KAFKA_BIN change the paths (scripts/check_deploy.py renders the properties).
set -eu
id="${HOSTNAME##*-}"
domain="kafka-headless.${POD_NAMESPACE}.svc.cluster.local"
tls="${KAFKA_TLS_DIR:-/etc/kafka/tls}"
work="${KAFKA_WORK_DIR:-/tmp/kafka}"
bin="${KAFKA_BIN:-/opt/kafka/bin}"
mkdir -p "$work"
# Kafka reads a PEM key store as one file: the private key (PKCS#8, unencrypted) followed by the certificate.
cat "$tls/tls.key" "$tls/tls.crt" > "$work/keystore.pem"
cat > "$work/server.properties" <<PROPERTIES
process.roles=broker,controller
node.id=${id}
controller.quorum.voters=0@kafka-0.${domain}:9093,1@kafka-1.${domain}:9093,2@kafka-2.${domain}:9093
listeners=SSL://:9092,CONTROLLER://:9093
advertised.listeners=SSL://${HOSTNAME}.${domain}:9092
listener.security.protocol.map=SSL:SSL,CONTROLLER:SSL
inter.broker.listener.name=SSL
controller.listener.names=CONTROLLER
ssl.keystore.type=PEM
ssl.keystore.location=${work}/keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=${tls}/ca.crt
ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([^,]+)\$/\$1/
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:gomon-kafka-broker;User:gomon-kafka-admin
log.dirs=/var/lib/kafka/data/logs
num.partitions=3
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
auto.create.topics.enable=false
log.retention.hours=24
PROPERTIES
"$bin/kafka-storage.sh" format --ignore-formatted -t "$KAFKA_CLUSTER_ID" -c "$work/server.properties"
exec "$bin/kafka-server-start.sh" "$work/server.properties"
