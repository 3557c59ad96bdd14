//! The Kafka source: a member of the consumer group, offsets committed by the pipeline (never automatically), lag
//! from librdkafka's statistics, and a dead-letter producer for messages that are not valid batches.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Header, Message as _, OwnedHeaders};
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

    fn commit_callback(&self, result: KafkaResult<()>, _: &TopicPartitionList) {
        match result {
            Ok(()) => self.metrics.commits.with_label_values(&["ok"]).inc(),
            Err(error) => {
                self.metrics.commits.with_label_values(&["error"]).inc();
                tracing::warn!(%error, "offset commit failed; those messages may be written again");
            }
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
    consumer: StreamConsumer<Context>,
    topic: String,
    dead_letter: Option<(FutureProducer, String)>,
    metrics: Metrics,
    committed: Positions,
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
            // Keep what is fetched ahead bounded: the pipeline pauses the partitions when the sink lags.
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
        Ok(Self {
            consumer,
            topic: config.topic.clone(),
            dead_letter,
            metrics,
            committed: Positions::new(),
        })
    }

    fn list(&self, positions: &Positions) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for (partition, offset) in positions {
            // Adding a partition to a fresh list cannot fail.
            let _ = list.add_partition_offset(&self.topic, *partition, Offset::Offset(*offset));
        }
        list
    }
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
        self.committed.extend(
            positions
                .iter()
                .map(|(partition, offset)| (*partition, *offset)),
        );
        if let Err(error) = self
            .consumer
            .commit(&self.list(positions), CommitMode::Async)
        {
            self.metrics.commits.with_label_values(&["error"]).inc();
            tracing::warn!(%error, "offset commit failed; those messages may be written again");
        }
    }

    fn pause(&mut self, paused: bool) {
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        let result = if paused {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        match result {
            Ok(()) if paused => {
                tracing::info!("remote write is behind: consumption paused");
            }
            Ok(()) => tracing::info!("consumption resumed"),
            Err(error) => tracing::warn!(%error, paused, "cannot pause or resume consumption"),
        }
    }

    async fn set_aside(&mut self, delivery: &Delivery, reason: Invalid) {
        let Some((producer, topic)) = &self.dead_letter else {
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
            Ok(_) => self.metrics.dead_letter.with_label_values(&["ok"]).inc(),
            Err((error, _)) => {
                self.metrics.dead_letter.with_label_values(&["error"]).inc();
                tracing::error!(%error, topic, partition = delivery.partition, offset = delivery.offset, "cannot copy an invalid message to the dead-letter topic");
            }
        }
    }

    fn close(&mut self) {
        // Only partitions still ours: another member may have moved on since.
        let assigned: Vec<i32> = self
            .consumer
            .assignment()
            .map(|list| partition_numbers(&list))
            .unwrap_or_default();
        self.committed
            .retain(|partition, _| assigned.contains(partition));
        if self.committed.is_empty() {
            return;
        }
        if let Err(error) = self
            .consumer
            .commit(&self.list(&self.committed), CommitMode::Sync)
        {
            tracing::warn!(%error, "final offset commit failed; the last messages may be written again");
        }
    }
}
