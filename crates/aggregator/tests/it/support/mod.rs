//! Shared by the aggregator's integration tests: batches to publish, a producer, an aggregator run in-process.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gomon_aggregator::AggregatorConfig;
use gomon_aggregator::config::RemoteWriteConfig;
use gomon_proto::MetricBatch;
use gomon_proto::metrics::v1::{Label, Sample};
use gomon_runtime::shutdown::{Shutdown, Trigger};
use gomon_testkit::{Broker, free_port};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// A batch of `host` at `timestamp_ms`: a counter per CPU mode and a gauge, values derived from `seed`.
pub(crate) fn batch(host: &str, timestamp_ms: i64, seed: f64) -> MetricBatch {
    let label = |name: &str, value: &str| Label {
        name: name.to_owned(),
        value: value.to_owned(),
    };
    let mut samples: Vec<Sample> = ["user", "system", "idle"]
        .iter()
        .enumerate()
        .map(|(i, mode)| Sample {
            name: "node_cpu_seconds_total".to_owned(),
            labels: vec![label("cpu", "0"), label("host", host), label("mode", mode)],
            value: seed * 10.0 + i as f64,
            kind: 2,
        })
        .collect();
    samples.push(Sample {
        name: "gomon_memory_used_percent".to_owned(),
        labels: vec![label("host", host)],
        value: seed + 0.25,
        kind: 1,
    });
    MetricBatch {
        host: host.to_owned(),
        timestamp_ms,
        agent_version: "test".to_owned(),
        correlation_id: format!("{host}-{timestamp_ms}"),
        sequence: 1,
        samples,
        ..MetricBatch::default()
    }
}

/// Samples per [`batch`].
pub(crate) const SAMPLES_PER_BATCH: usize = 4;

/// A producer to the test broker.
pub(crate) fn producer(broker: &Broker) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer")
}

/// Publishes `payload` keyed by `key`.
pub(crate) async fn publish(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8]) {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .expect("published");
}

/// Publishes `batch` keyed by its host.
pub(crate) async fn publish_batch(producer: &FutureProducer, topic: &str, batch: &MetricBatch) {
    publish(
        producer,
        topic,
        &batch.host,
        &gomon_proto::encode_batch(batch),
    )
    .await;
}

/// An aggregator configuration for the test broker and a remote write URL, flushing every 100 ms.
pub(crate) fn config(
    broker: &Broker,
    topic: &str,
    group: &str,
    write_url: Option<String>,
) -> AggregatorConfig {
    let mut config = AggregatorConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], free_port())),
        shutdown_timeout: Duration::from_secs(2),
        ..AggregatorConfig::default()
    };
    config.kafka.brokers = broker.address();
    config.kafka.topic = topic.to_owned();
    config.kafka.group_id = group.to_owned();
    config.kafka.session_timeout = Duration::from_secs(6);
    config.remote_write = write_url.map(|url| RemoteWriteConfig {
        url,
        max_delay: Duration::from_millis(100),
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        ..RemoteWriteConfig::default()
    });
    config
}

/// An aggregator running in this process.
pub(crate) struct Running {
    trigger: Trigger,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// Its `/metrics` URL.
    pub metrics_url: String,
    /// Its `/federate` URL.
    pub federate_url: String,
    /// Its `/health/ready` URL.
    pub ready_url: String,
}

impl Running {
    /// Starts `config`.
    pub(crate) fn start(config: AggregatorConfig) -> Running {
        // Its logs, to read when a test fails.
        static LOGGING: std::sync::Once = std::sync::Once::new();
        LOGGING.call_once(|| {
            let _ = gomon_runtime::logging::init(None, gomon_runtime::logging::LogFormat::Json);
        });
        let (trigger, shutdown) = Shutdown::new();
        let metrics_url = format!("http://{}/metrics", config.listen);
        let federate_url = format!("http://{}/federate", config.listen);
        let ready_url = format!("http://{}/health/ready", config.listen);
        let task = tokio::spawn(gomon_aggregator::run(
            config,
            gomon_runtime::metrics::registry(),
            shutdown,
        ));
        Running {
            trigger,
            task,
            metrics_url,
            federate_url,
            ready_url,
        }
    }

    /// The value of the metric line starting with `series` (name and labels), 0 when absent.
    pub(crate) async fn metric(&self, series: &str) -> f64 {
        gomon_testkit::metric(&self.metrics_url, series)
            .await
            .unwrap_or(0.0)
    }

    /// Stops it (SIGTERM's path) and waits until it has committed.
    pub(crate) async fn stop(self) {
        self.trigger.fire();
        self.task
            .await
            .expect("aggregator task")
            .expect("aggregator stopped cleanly");
    }
}
