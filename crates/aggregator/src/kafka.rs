//! The Kafka source: a member of the consumer group, offsets committed by the pipeline (never automatically), lag
//! from librdkafka's statistics, and a dead-letter producer for messages that are not valid batches.

use std::collections::HashMap;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::config::{ConfigError, KafkaConfig, config_error};
use crate::metrics::Metrics;
use crate::pipeline::{Delivery, Positions, Source};
use crate::transform::Invalid;

/// Reports lag, commits and rebalances into metrics and logs.
pub struct Context {
    metrics: Metrics,
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        for (topic, state) in &statistics.topics {
            for (partition, state) in &state.partitions {
                // Partition -1 is librdkafka's internal "unassigned" queue; -1 lag means unknown.
                if *partition >= 0 && state.consumer_lag >= 0 {
                    self.metrics
                        .lag
                        .with_label_values(&[topic, &partition.to_string()])
                        .set(state.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = ?partition_numbers(partitions), "partitions assigned");
            }
            Rebalance::Revoke(partitions) => {
                tracing::info!(partitions = ?partition_numbers(partitions), "partitions revoked");
                for element in partitions.elements() {
                    let _ = self
                        .metrics
                        .lag
                        .remove_label_values(&[element.topic(), &element.partition().to_string()]);
                }
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
    }
}

fn partition_numbers(partitions: &TopicPartitionList) -> Vec<i32> {
    partitions
        .elements()
        .iter()
        .map(|element| element.partition())
        .collect()
}

/// The consumer group member.
pub struct KafkaSource {
    consumer: Arc<StreamConsumer<Context>>,
    dead_letter: Option<(FutureProducer, String, Metrics)>,
    topic: String,
    committer: Committer,
}

/// Commits offsets in order on a thread of its own, synchronously, so that each outcome is known and counted
/// without holding up consumption; positions that queue up meanwhile are merged into one commit.
struct Committer {
    positions: mpsc::Sender<Positions>,
    thread: std::thread::JoinHandle<()>,
}

impl Committer {
    fn start(consumer: Arc<StreamConsumer<Context>>, topic: String, metrics: Metrics) -> Self {
        let (positions, queued) = mpsc::channel::<Positions>();
        let thread = std::thread::spawn(move || {
            while let Ok(mut merged) = queued.recv() {
                while let Ok(more) = queued.try_recv() {
                    merged.extend(more);
                }
                // Only partitions still ours: another member may have moved on since.
                let assigned = consumer
                    .assignment()
                    .map(|list| partition_numbers(&list))
                    .unwrap_or_default();
                let mut list = TopicPartitionList::new();
                for (partition, offset) in &merged {
                    if assigned.contains(partition) {
                        // Adding a partition to a fresh list cannot fail.
                        let _ =
                            list.add_partition_offset(&topic, *partition, Offset::Offset(*offset));
                    }
                }
                if list.count() == 0 {
                    continue;
                }
                match consumer.commit(&list, CommitMode::Sync) {
                    Ok(()) => {
                        metrics.commits.with_label_values(&["ok"]).inc();
                        tracing::debug!(positions = ?merged, "offsets committed");
                    }
                    Err(error) => {
                        metrics.commits.with_label_values(&["error"]).inc();
                        tracing::warn!(%error, "offset commit failed; those messages may be written again");
                    }
                }
            }
        });
        Self { positions, thread }
    }
}

fn client_config(config: &KafkaConfig) -> Result<ClientConfig, ConfigError> {
    let mut client = ClientConfig::new();
    gomon_runtime::kafka::connection(
        &mut client,
        &config.brokers,
        config.tls.as_ref(),
        config.sasl.as_ref(),
    )
    .map_err(|error| config_error(format!("aggregator.kafka.{}", error.key), error.message))?;
    client.set("client.id", "gomon-aggregator");
    Ok(client)
}

impl KafkaSource {
    /// Joins the group and subscribes to the topic (connections are made lazily: nothing fails here when the
    /// brokers are down).
    pub fn new(config: &KafkaConfig, metrics: Metrics) -> Result<Self, ConfigError> {
        let mut client = client_config(config)?;
        client
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", &config.auto_offset_reset)
            .set(
                "session.timeout.ms",
                config.session_timeout.as_millis().to_string(),
            )
            .set("statistics.interval.ms", "5000")
            // Keep what is fetched ahead bounded: the pipeline stops reading while the receiver lags.
            .set("queued.max.messages.kbytes", "16384");
        let consumer: StreamConsumer<Context> = client
            .create_with_context(Context {
                metrics: metrics.clone(),
            })
            .map_err(|error| config_error("aggregator.kafka", error.to_string()))?;
        consumer
            .subscribe(&[&config.topic])
            .map_err(|error| config_error("aggregator.kafka.topic", error.to_string()))?;
        let dead_letter = match &config.dead_letter_topic {
            Some(topic) => {
                let producer: FutureProducer = client_config(config)?
                    .set("enable.idempotence", "true")
                    .set("acks", "all")
                    .set("message.timeout.ms", "30000")
                    .create()
                    .map_err(|error| {
                        config_error("aggregator.kafka.dead_letter_topic", error.to_string())
                    })?;
                Some((producer, topic.clone()))
            }
            None => None,
        };
        let consumer = Arc::new(consumer);
        let committer = Committer::start(consumer.clone(), config.topic.clone(), metrics.clone());
        Ok(Self {
            consumer,
            dead_letter: dead_letter.map(|(producer, topic)| (producer, topic, metrics)),
            topic: config.topic.clone(),
            committer,
        })
    }
}

/// The W3C trace context fields among a message's headers (read only when spans are exported).
fn trace_context(message: &impl rdkafka::Message) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    if !gomon_runtime::telemetry::enabled() {
        return fields;
    }
    if let Some(headers) = message.headers() {
        for header in headers.iter() {
            let value = header
                .value
                .and_then(|value| std::str::from_utf8(value).ok());
            if let (true, Some(value)) = (matches!(header.key, "traceparent" | "tracestate"), value)
            {
                fields.insert(header.key.to_owned(), value.to_owned());
            }
        }
    }
    fields
}

impl Source for KafkaSource {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            match self.consumer.recv().await {
                Ok(message) => {
                    return Some(Delivery {
                        payload: message.payload().unwrap_or_default().to_vec(),
                        partition: message.partition(),
                        offset: message.offset(),
                        trace_context: trace_context(&message),
                    });
                }
                Err(error) => {
                    // Brokers away, topic not there yet, a rebalance: librdkafka recovers by itself.
                    tracing::warn!(%error, "cannot consume from Kafka; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn commit(&mut self, positions: &Positions) {
        // The thread ends only in `close`.
        let _ = self.committer.positions.send(positions.clone());
    }

    async fn set_aside(&mut self, delivery: &Delivery, reason: Invalid) {
        let Some((producer, topic, metrics)) = &self.dead_letter else {
            return;
        };
        let partition = delivery.partition.to_string();
        let offset = delivery.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "gomon-source-topic",
                value: Some(self.topic.as_str()),
            })
            .insert(Header {
                key: "gomon-source-partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "gomon-source-offset",
                value: Some(offset.as_str()),
            })
            .insert(Header {
                key: "gomon-invalid-reason",
                value: Some(reason.reason()),
            });
        let record = FutureRecord::<(), [u8]>::to(topic)
            .payload(delivery.payload.as_slice())
            .headers(headers);
        match producer.send(record, Duration::from_secs(30)).await {
            Ok(_) => metrics.dead_letter.with_label_values(&["ok"]).inc(),
            Err((error, _)) => {
                metrics.dead_letter.with_label_values(&["error"]).inc();
                tracing::error!(%error, topic, partition = delivery.partition, offset = delivery.offset, "cannot copy an invalid message to the dead-letter topic");
            }
        }
    }

    /// Waits for the last commits and leaves the group (so that its partitions move at once), on a thread of its
    /// own: brokers that do not answer by `deadline` are left behind, and what was not committed is replayed.
    fn close(self, deadline: std::time::Instant) {
        let Self {
            consumer,
            dead_letter,
            committer,
            ..
        } = self;
        let (closed, done) = mpsc::channel();
        std::thread::spawn(move || {
            drop(committer.positions);
            if committer.thread.join().is_err() {
                tracing::error!("the offset committer failed");
            }
            drop(dead_letter);
            drop(consumer);
            let _ = closed.send(());
        });
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if done.recv_timeout(left).is_err() {
            tracing::warn!(
                "Kafka did not answer the last commit and leave in time; stopping anyway: what was not committed is replayed"
            );
        }
    }
}
