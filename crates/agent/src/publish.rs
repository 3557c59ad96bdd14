//! Publishing batches to Kafka: configuration (brokers, topic, compression, TLS, SASL) and the producer.

use std::collections::HashMap;
use std::time::Duration;

use gomon_runtime::kafka::{Compression, SaslConfig, TlsConfig};
use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use serde::{Deserialize, Serialize};
use std::sync::mpsc;

use gomon_runtime::config::KeyError;

use crate::error::Error;

/// Kafka settings of the agent (`agent.kafka`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated `host:port`.
    pub brokers: String,
    /// Topic the batches go to.
    pub topic: String,
    /// Create the topic at start-up when it does not exist (with `partitions` partitions).
    pub create_topic: bool,
    /// Partitions of a topic the agent creates.
    pub partitions: i32,
    /// Replication factor of a topic the agent creates.
    pub replication_factor: i32,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: Compression,
    /// How long one batch may take to be acknowledged by the brokers before the attempt counts as failed (the
    /// batch stays buffered and is sent again).
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// TLS to the brokers (the seed runs its three brokers with SSL).
    pub tls: Option<TlsConfig>,
    /// SASL authentication.
    pub sasl: Option<SaslConfig>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".to_owned(),
            topic: "gomon.metrics".to_owned(),
            create_topic: false,
            partitions: 3,
            replication_factor: 1,
            compression: Compression::Lz4,
            delivery_timeout: Duration::from_secs(30),
            tls: None,
            sasl: None,
        }
    }
}

impl KafkaConfig {
    /// Checks values types cannot; the error names the key within the section (`topic`).
    pub fn check(&self) -> Result<(), KeyError> {
        if self.topic.trim().is_empty() {
            return Err(KeyError::new("topic", "must not be empty"));
        }
        if self.delivery_timeout < Duration::from_millis(1) {
            return Err(KeyError::new("delivery_timeout", "must be at least 1ms"));
        }
        self.client_config()?;
        Ok(())
    }

    /// The librdkafka settings these values mean.
    fn client_config(&self) -> Result<ClientConfig, KeyError> {
        let mut config = ClientConfig::new();
        gomon_runtime::kafka::connection(
            &mut config,
            &self.brokers,
            self.tls.as_ref(),
            self.sasl.as_ref(),
        )?;
        config
            .set("client.id", "gomon-agent")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", self.compression.as_str())
            // One batch is in flight at a time (the next waits for its acknowledgement), so lingering to fill
            // a larger request would only delay it and wake the broker thread once more.
            .set("linger.ms", "0")
            .set(
                "message.timeout.ms",
                self.delivery_timeout.as_millis().to_string(),
            );
        Ok(config)
    }
}

/// Wait before the first look for a batch's delivery report; the wait doubles up to [`MAX_POLL`] until it comes.
///
/// The producer is polled without blocking, from the sender task: rdkafka's blocking `poll(timeout)` serves events
/// until the whole timeout has passed and, as it hands librdkafka whole milliseconds, busy-loops through the last
/// one, which cost more CPU than everything else the agent does.
const FIRST_POLL: Duration = Duration::from_millis(2);

/// Longest wait between two looks for a delivery report.
const MAX_POLL: Duration = Duration::from_millis(50);

/// Hands each message's delivery report to the sender waiting for it, and logs the client's errors (keeping the
/// last one, the cause to name when a delivery fails).
#[derive(Default)]
struct Reports {
    last_error: std::sync::Mutex<Option<String>>,
}

impl Reports {
    /// The client error reported since the last call, if any.
    fn take_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

impl ClientContext for Reports {
    fn error(&self, error: KafkaError, reason: &str) {
        gomon_runtime::kafka::log_client_error("agent.kafka", &error, reason);
        let cause =
            match gomon_runtime::kafka::hint("agent.kafka", error.rdkafka_error_code(), reason) {
                Some(hint) => format!("{reason} ({hint})"),
                None => reason.to_owned(),
            };
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // "All brokers are down" follows each failed connection: the failure itself is the better cause.
        if last.is_none() || error.rdkafka_error_code() != Some(RDKafkaErrorCode::AllBrokersDown) {
            *last = Some(cause);
        }
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<mpsc::Sender<Result<(), String>>>;

    fn delivery(&self, result: &DeliveryResult<'_>, waiting: Self::DeliveryOpaque) {
        let report = match result {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(error.to_string()),
        };
        // The waiter may have given up (timed out); nothing else needs the report.
        let _ = waiting.send(report);
    }
}

/// The Kafka producer: idempotent, `acks=all`, compressed, one batch per message keyed by host.
///
/// It is polled only while a batch waits for its acknowledgement, without blocking (see [`FIRST_POLL`]): an idle
/// agent costs no CPU in the producer (a background polling thread, as librdkafka's usual wrappers run, wakes all
/// the time).
pub struct Publisher {
    config: KafkaConfig,
    producer: BaseProducer<Reports>,
}

impl Publisher {
    /// A producer for `config` (it connects lazily; nothing fails here when the brokers are down).
    pub fn new(config: &KafkaConfig) -> Result<Self, Error> {
        Ok(Self {
            config: config.clone(),
            producer: Self::producer(config)?,
        })
    }

    fn producer(config: &KafkaConfig) -> Result<BaseProducer<Reports>, Error> {
        config
            .client_config()
            .map_err(|error| error.within("agent.kafka"))?
            .create_with_context(Reports::default())
            .map_err(|error| Error::Config(KeyError::new("agent.kafka", error.to_string())))
    }

    /// Creates the topic when `create_topic` is set and it does not exist yet.
    pub async fn ensure_topic(&self) -> Result<(), String> {
        if !self.config.create_topic {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = self
            .config
            .client_config()
            .map_err(|error| error.to_string())?
            .create()
            .map_err(|error| error.to_string())?;
        let topic = NewTopic::new(
            &self.config.topic,
            self.config.partitions,
            TopicReplication::Fixed(self.config.replication_factor),
        );
        let options = AdminOptions::new().operation_timeout(Some(self.config.delivery_timeout));
        let results = admin
            .create_topics(&[topic], &options)
            .await
            .map_err(|error| error.to_string())?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(format!("cannot create topic {topic}: {code}")),
            }
        }
        Ok(())
    }

    /// The topic batches go to.
    pub fn topic(&self) -> &str {
        &self.config.topic
    }

    /// Sends one batch, with the trace context fields as headers, and waits for the brokers' acknowledgement (or
    /// `delivery_timeout`).
    pub async fn send(
        &mut self,
        key: &str,
        payload: &[u8],
        trace_context: &HashMap<String, String>,
    ) -> Result<(), String> {
        let mut headers = OwnedHeaders::new().insert(Header {
            key: "content-type",
            value: Some(gomon_proto::CONTENT_TYPE),
        });
        for (key, value) in trace_context {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let (report, delivered) = mpsc::channel();
        let record = BaseRecord::with_opaque_to(&self.config.topic, Box::new(report))
            .key(key)
            .payload(payload)
            .headers(headers);
        if let Err((error, _)) = self.producer.send(record) {
            return Err(error.to_string());
        }
        // librdkafka gives up on the message after `delivery_timeout` and reports that; wait a little longer.
        let limit = self.config.delivery_timeout + Duration::from_secs(5);
        let started = tokio::time::Instant::now();
        let mut step = FIRST_POLL;
        let result = loop {
            tokio::time::sleep(step).await;
            // Serves the reports already queued and returns at once (a blocking `poll` spins through its last
            // millisecond, see [`FIRST_POLL`]).
            self.producer.poll(Duration::ZERO);
            match delivered.try_recv() {
                Ok(report) => break report,
                Err(mpsc::TryRecvError::Disconnected) => {
                    break Err("delivery report lost".to_owned());
                }
                Err(mpsc::TryRecvError::Empty) if started.elapsed() > limit => {
                    break Err("no delivery report".to_owned());
                }
                Err(mpsc::TryRecvError::Empty) => step = (step * 2).min(MAX_POLL),
            }
        };
        // The delivery report says only that the message timed out; the client's last error says why.
        let cause = self.producer.context().take_error();
        let result = result.map_err(|error| match cause {
            Some(cause) => format!("{error}; the client reported: {cause}"),
            None => error,
        });
        if result.is_err()
            && self.producer.client().fatal_error().is_some()
            && let Ok(producer) = Self::producer(&self.config)
        {
            // An idempotent producer can end in a fatal state (its sequence lost after timeouts): start afresh.
            self.producer = producer;
        }
        result
    }
}
