//! The Kafka source: a member of the consumer group, offsets committed by the pipeline (never automatically), lag
//! from librdkafka's statistics, and a dead-letter producer for messages that are not valid batches.
//!
//! A copy to the dead-letter topic that fails is retried with backoff and consumption waits for it: the message's
//! offset is committed only once its copy is made (what came before it is still written and committed). The topic is checked (or created) at start-up, and readiness
//! fails while it is missing or a copy is being retried.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use gomon_runtime::shutdown::Shutdown;
use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::AggregatorConfig;
use crate::config::KafkaConfig;
use crate::metrics::Metrics;
use crate::pipeline::{Delivery, Positions, Source};
use crate::transform::Invalid;
use gomon_runtime::backoff;
use gomon_runtime::config::KeyError;

/// Reports lag, commits and rebalances into metrics and logs.
pub struct Context {
    metrics: Metrics,
}

impl ClientContext for Context {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        gomon_runtime::kafka::log_client_error("aggregator.kafka", &error, reason);
    }

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
    dead_letter: Option<DeadLetter>,
    topic: String,
    committer: Committer,
    /// Offsets not to commit past, by partition: invalid messages whose copy was abandoned when stopping.
    held: Positions,
    /// The copy to the dead-letter topic under way.
    pending: Option<Pending>,
    /// The latest positions the pipeline asked to commit, by partition.
    asked: Positions,
}

/// Whether invalid messages can be set aside, for `/health/ready`.
#[derive(Clone, Debug, Default)]
pub struct DeadLetterHealth(Arc<AtomicU8>);

const UNCHECKED: u8 = 0;
const FOUND: u8 = 1;
const MISSING: u8 = 2;
const FAILING: u8 = 3;

impl DeadLetterHealth {
    /// What stops invalid messages from being set aside: the topic is `missing`, or a copy is `failing` (being
    /// retried); None otherwise (also while the topic was not checked yet, or when there is no such topic).
    pub fn problem(&self) -> Option<&'static str> {
        match self.0.load(Ordering::Relaxed) {
            MISSING => Some("missing"),
            FAILING => Some("failing"),
            _ => None,
        }
    }

    fn set(&self, state: u8, metrics: &Metrics) {
        self.0.store(state, Ordering::Relaxed);
        metrics
            .dead_letter_failing
            .set(i64::from(matches!(state, MISSING | FAILING)));
    }
}

/// The dead-letter topic and its producer.
#[derive(Clone)]
struct DeadLetter {
    producer: FutureProducer,
    /// The producer's configuration, for a new one after a fatal error.
    client: ClientConfig,
    topic: String,
    /// Partitions and replication factor, when the topic is created at start-up.
    create: Option<(i32, i32)>,
    metrics: Metrics,
    health: DeadLetterHealth,
    min_backoff: Duration,
    max_backoff: Duration,
    /// Larger messages are copied without their payload.
    max_message_bytes: usize,
    shutdown: Shutdown,
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

fn client_config(config: &KafkaConfig) -> Result<ClientConfig, KeyError> {
    let mut client = ClientConfig::new();
    gomon_runtime::kafka::connection(
        &mut client,
        &config.brokers,
        config.tls.as_ref(),
        config.sasl.as_ref(),
    )
    .map_err(|error| error.within("aggregator.kafka"))?;
    client.set("client.id", "gomon-aggregator");
    Ok(client)
}

impl KafkaSource {
    /// Joins the group and subscribes to the topic (connections are made lazily: nothing fails here when the
    /// brokers are down). `shutdown` ends the retries of a dead-letter copy.
    pub fn new(
        aggregator: &AggregatorConfig,
        metrics: Metrics,
        shutdown: Shutdown,
    ) -> Result<Self, KeyError> {
        let config = &aggregator.kafka;
        let max_message_bytes = aggregator.limits.max_message_bytes;
        let mut client = client_config(config)?;
        client
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", config.auto_offset_reset.as_str())
            .set(
                "session.timeout.ms",
                config.session_timeout.as_millis().to_string(),
            )
            .set("statistics.interval.ms", "5000")
            // Keep what is fetched ahead bounded: the pipeline stops reading while the receiver lags.
            .set("queued.max.messages.kbytes", "16384")
            // Larger messages are invalid (aggregator.limits.max_message_bytes); librdkafka still returns one that is
            // alone in its fetch, so that consumption goes on.
            .set("fetch.message.max.bytes", max_message_bytes.to_string());
        let consumer: StreamConsumer<Context> = client
            .create_with_context(Context {
                metrics: metrics.clone(),
            })
            .map_err(|error| KeyError::new("aggregator.kafka", error.to_string()))?;
        consumer
            .subscribe(&[&config.topic])
            .map_err(|error| KeyError::new("aggregator.kafka.topic", error.to_string()))?;
        let dead_letter = match &config.dead_letter_topic {
            Some(topic) => {
                let mut client = client_config(config)?;
                client
                    .set("enable.idempotence", "true")
                    .set("acks", "all")
                    // One attempt; a failed copy is tried again with backoff.
                    .set("message.timeout.ms", "10000")
                    // Room for the headers besides the largest valid message.
                    .set(
                        "message.max.bytes",
                        (max_message_bytes + 65_536).to_string(),
                    );
                let producer: FutureProducer = client.create().map_err(|error| {
                    KeyError::new("aggregator.kafka.dead_letter_topic", error.to_string())
                })?;
                let remote = aggregator.remote_write.clone().unwrap_or_default();
                Some(DeadLetter {
                    producer,
                    client,
                    topic: topic.clone(),
                    create: config.create_dead_letter_topic.then_some((
                        config.dead_letter_partitions,
                        config.dead_letter_replication_factor,
                    )),
                    metrics: metrics.clone(),
                    health: DeadLetterHealth::default(),
                    min_backoff: remote.min_backoff,
                    max_backoff: remote.max_backoff,
                    max_message_bytes,
                    shutdown,
                })
            }
            None => None,
        };
        let consumer = Arc::new(consumer);
        let committer = Committer::start(consumer.clone(), config.topic.clone(), metrics);
        Ok(Self {
            consumer,
            dead_letter,
            topic: config.topic.clone(),
            committer,
            held: Positions::new(),
            pending: None,
            asked: Positions::new(),
        })
    }

    /// The state of the dead-letter topic, for readiness (always fine without one).
    pub fn dead_letter_health(&self) -> DeadLetterHealth {
        self.dead_letter
            .as_ref()
            .map(|dead| dead.health.clone())
            .unwrap_or_default()
    }

    /// Checks that the dead-letter topic exists (creating it first with `create_dead_letter_topic`), again with
    /// backoff until it does: an ERROR log and failing readiness while it is missing, rather than a surprise at the
    /// first invalid message. Nothing to do without a dead-letter topic.
    pub fn check_dead_letter_topic(&self) -> impl Future<Output = ()> + Send + 'static {
        let consumer = self.consumer.clone();
        let checked = self.dead_letter.as_ref().map(|dead| {
            (
                dead.client.clone(),
                dead.topic.clone(),
                dead.create,
                dead.health.clone(),
                dead.metrics.clone(),
                (dead.min_backoff, dead.max_backoff),
                dead.shutdown.clone(),
            )
        });
        async move {
            let Some((client, topic, create, health, metrics, (min, max), shutdown)) = checked
            else {
                return;
            };
            let mut attempt = 0u32;
            loop {
                attempt += 1;
                if let Some((partitions, replication)) = create
                    && let Err(error) = create_topic(&client, &topic, partitions, replication).await
                {
                    tracing::warn!(topic, %error, "cannot create the dead-letter topic");
                }
                let (consumer, name) = (consumer.clone(), topic.clone());
                let found = tokio::task::spawn_blocking(move || {
                    topic_exists(&consumer, &name, Duration::from_secs(10))
                })
                .await;
                match found {
                    Ok(Ok(true)) => {
                        if health.0.load(Ordering::Relaxed) == MISSING {
                            health.set(FOUND, &metrics);
                        } else {
                            let _ = health.0.compare_exchange(
                                UNCHECKED,
                                FOUND,
                                Ordering::Relaxed,
                                Ordering::Relaxed,
                            );
                        }
                        tracing::info!(topic, "dead-letter topic found");
                        return;
                    }
                    Ok(Ok(false)) => {
                        if health.0.load(Ordering::Relaxed) != FAILING {
                            health.set(MISSING, &metrics);
                        }
                        if attempt == 1 || attempt.is_multiple_of(10) {
                            tracing::error!(
                                topic,
                                "the dead-letter topic does not exist: the first invalid message will stop consumption until it is created (create it, or set aggregator.kafka.create_dead_letter_topic)"
                            );
                        }
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(topic, %error, "cannot check the dead-letter topic yet");
                    }
                    Err(_) => return,
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff::delay(min, max, attempt, None)) => {}
                    () = shutdown.clone().wait() => return,
                }
            }
        }
    }
}

/// Whether `topic` exists with partitions (a metadata request, which does not create it).
fn topic_exists(
    consumer: &StreamConsumer<Context>,
    topic: &str,
    timeout: Duration,
) -> Result<bool, KafkaError> {
    match consumer.fetch_metadata(Some(topic), timeout) {
        Ok(metadata) => Ok(metadata.topics().iter().any(|found| {
            found.name() == topic && found.error().is_none() && !found.partitions().is_empty()
        })),
        Err(KafkaError::MetadataFetch(
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic,
        )) => Ok(false),
        Err(error) => Err(error),
    }
}

async fn create_topic(
    client: &ClientConfig,
    topic: &str,
    partitions: i32,
    replication: i32,
) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> =
        client.create().map_err(|error| error.to_string())?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&[new], &options)
        .await
        .map_err(|error| error.to_string())?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(topic, partitions, replication, "dead-letter topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(code.to_string()),
        }
    }
    Ok(())
}

impl DeadLetter {
    /// One attempt at copying `delivery`, with the headers that say where it came from and why.
    async fn copy(
        &self,
        source_topic: &str,
        delivery: &Delivery,
        reason: Invalid,
        with_payload: bool,
    ) -> Result<(), KafkaError> {
        let partition = delivery.partition.to_string();
        let offset = delivery.offset.to_string();
        let bytes = delivery.payload.len().to_string();
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "gomon-source-topic",
                value: Some(source_topic),
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
        let mut record = FutureRecord::<(), [u8]>::to(&self.topic);
        if with_payload {
            record = record.payload(delivery.payload.as_slice());
        } else {
            headers = headers.insert(Header {
                key: "gomon-payload-omitted-bytes",
                value: Some(bytes.as_str()),
            });
        }
        self.producer
            .send(record.headers(headers), Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|(error, _)| error)
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

impl DeadLetter {
    /// Copies `delivery`, trying again with backoff until it is done (true) or the process stops (false); returns
    /// the producer it ended with (a new one after a fatal error).
    async fn copy_until_done(
        mut self,
        source_topic: String,
        delivery: Delivery,
        reason: Invalid,
    ) -> (bool, FutureProducer) {
        // The copy of a message over the limit carries only the headers: the original stays in the source topic.
        let mut with_payload = delivery.payload.len() <= self.max_message_bytes;
        let mut attempt = 0u32;
        loop {
            let copied = tokio::select! {
                copied = self.copy(&source_topic, &delivery, reason, with_payload) => copied,
                () = self.shutdown.clone().wait() => return self.abandon(&delivery),
            };
            let error = match copied {
                Ok(()) => {
                    self.metrics.dead_letter.with_label_values(&["ok"]).inc();
                    if attempt > 0 {
                        tracing::info!(
                            topic = self.topic,
                            partition = delivery.partition,
                            offset = delivery.offset,
                            attempts = attempt + 1,
                            "invalid message copied to the dead-letter topic; consumption goes on"
                        );
                    }
                    self.health.set(FOUND, &self.metrics);
                    return (true, self.producer);
                }
                Err(error) => error,
            };
            self.metrics.dead_letter.with_label_values(&["error"]).inc();
            if with_payload
                && matches!(
                    error.rdkafka_error_code(),
                    Some(
                        RDKafkaErrorCode::MessageSizeTooLarge
                            | RDKafkaErrorCode::MessageBatchTooLarge
                            | RDKafkaErrorCode::InvalidMessageSize
                    )
                )
            {
                tracing::warn!(%error, topic = self.topic, partition = delivery.partition, offset = delivery.offset, "the dead-letter topic refuses the message's size; copying its headers only");
                with_payload = false;
                continue;
            }
            attempt += 1;
            self.health.set(FAILING, &self.metrics);
            if let Some((code, fatal)) = self.producer.client().fatal_error() {
                tracing::warn!(
                    ?code,
                    fatal,
                    "the dead-letter producer failed for good; making a new one"
                );
                match self.client.create() {
                    Ok(producer) => self.producer = producer,
                    Err(error) => tracing::error!(%error, "cannot make a new dead-letter producer"),
                }
            }
            let wait = backoff::delay(self.min_backoff, self.max_backoff, attempt, None);
            if attempt == 1 || attempt.is_multiple_of(10) {
                tracing::error!(%error, topic = self.topic, partition = delivery.partition, offset = delivery.offset, attempt, retry_in = ?wait, "cannot copy an invalid message to the dead-letter topic; retrying, and consuming nothing more meanwhile");
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.shutdown.clone().wait() => return self.abandon(&delivery),
            }
        }
    }

    fn abandon(self, delivery: &Delivery) -> (bool, FutureProducer) {
        tracing::warn!(
            topic = self.topic,
            partition = delivery.partition,
            offset = delivery.offset,
            "stopping before an invalid message could be copied to the dead-letter topic; its offset is not committed and it will be read again"
        );
        (false, self.producer)
    }
}

impl KafkaSource {
    /// `positions` without going past an invalid message whose copy is pending or was abandoned.
    fn clamped(&self, positions: &Positions) -> Positions {
        let mut positions = positions.clone();
        let pending = self
            .pending
            .as_ref()
            .map(|pending| (pending.partition, pending.offset));
        for (partition, limit) in self.held.iter().map(|(p, o)| (*p, *o)).chain(pending) {
            if let Some(position) = positions.get_mut(&partition) {
                *position = (*position).min(limit);
            }
        }
        positions
    }

    fn send_commit(&self, positions: Positions) {
        // The thread ends only in `close`.
        let _ = self.committer.positions.send(positions);
    }

    /// Waits for the pending copy, if any. False when it was abandoned (the process stops): nothing more is read.
    async fn settle(&mut self) -> bool {
        let Some(pending) = &mut self.pending else {
            return true;
        };
        // Cancel-safe: the task stays in `self.pending` until it has finished.
        let outcome = (&mut pending.task).await;
        let Some(Pending {
            partition, offset, ..
        }) = self.pending.take()
        else {
            return true;
        };
        match outcome {
            Ok((true, producer)) => {
                if let Some(dead) = &mut self.dead_letter {
                    dead.producer = producer;
                }
                // What the pipeline asked to commit past the message meanwhile can go now.
                if let Some(position) = self
                    .asked
                    .get(&partition)
                    .filter(|position| **position > offset)
                {
                    let positions = Positions::from([(partition, *position)]);
                    self.send_commit(self.clamped(&positions));
                }
                true
            }
            Ok((false, _)) | Err(_) => {
                let position = self.held.entry(partition).or_insert(offset);
                *position = (*position).min(offset);
                false
            }
        }
    }
}

/// A copy to the dead-letter topic under way: consumption waits for it, commits stop before it.
struct Pending {
    partition: i32,
    offset: i64,
    task: tokio::task::JoinHandle<(bool, FutureProducer)>,
}

impl Source for KafkaSource {
    async fn next(&mut self) -> Option<Delivery> {
        if !self.settle().await {
            return None;
        }
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
        self.asked.extend(
            positions
                .iter()
                .map(|(partition, offset)| (*partition, *offset)),
        );
        self.send_commit(self.clamped(positions));
    }

    /// Starts copying an invalid message to the dead-letter topic, retried with backoff until it is done; until
    /// then nothing more is read and its partition is not committed past it (the pipeline goes on writing and
    /// committing what came before). Stopping meanwhile leaves its offset uncommitted, to be read again.
    async fn set_aside(&mut self, delivery: &Delivery, reason: Invalid) {
        let Some(dead) = &self.dead_letter else {
            return;
        };
        let task = tokio::spawn(dead.clone().copy_until_done(
            self.topic.clone(),
            delivery.clone(),
            reason,
        ));
        self.pending = Some(Pending {
            partition: delivery.partition,
            offset: delivery.offset,
            task,
        });
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
