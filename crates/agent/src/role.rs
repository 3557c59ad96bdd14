//! `gomon agent`: collect every `interval`, publish each snapshot to Kafka as a protobuf batch from a bounded
//! buffer, and serve the host's current values and the agent's health over HTTP.
//!
//! Collection never waits for Kafka: batches queue in a buffer of `buffer_batches`; one sender task publishes them
//! in order, one at a time, keeping a batch at the head until the brokers acknowledge it. When the buffer is full
//! the oldest batch is dropped and counted.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use gomon_proto::metrics::v1::{
    Label, MetricBatch, Sample as WireSample, sample::Kind as WireKind,
};
use gomon_runtime::backoff::Backoff;
use gomon_runtime::http::SharedListener;
use gomon_runtime::metrics::{FamilyType, TextWriter, must};
use gomon_runtime::shutdown::Shutdown;
use gomon_runtime::telemetry;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::Instrument as _;

use crate::publish::Publisher;
use crate::{AgentConfig, Collector, Kind, Snapshot};

/// The agent's own metrics.
#[derive(Clone)]
struct Metrics {
    collection: Histogram,
    sent: IntCounter,
    failed: IntCounter,
    dropped: IntCounter,
    buffered: IntGauge,
}

impl Metrics {
    fn new(registry: &Registry) -> Self {
        let collection = must(Histogram::with_opts(
            HistogramOpts::new(
                "agent_collection_duration_seconds",
                "Time one collection cycle takes.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0,
            ]),
        ));
        let counter = |name: &str, help: &str| must(IntCounter::new(name, help));
        let sent = counter("agent_batches_sent_total", "Batches acknowledged by Kafka.");
        let failed = counter(
            "agent_batches_failed_total",
            "Attempts to publish a batch that failed (it is retried).",
        );
        let dropped = counter(
            "agent_batches_dropped_total",
            "Batches dropped because the buffer was full.",
        );
        let buffered = must(IntGauge::new(
            "agent_buffer_batches",
            "Batches waiting to be published.",
        ));
        for metric in [
            Box::new(collection.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(sent.clone()),
            Box::new(failed.clone()),
            Box::new(dropped.clone()),
            Box::new(buffered.clone()),
        ] {
            must(registry.register(metric));
        }
        Self {
            collection,
            sent,
            failed,
            dropped,
            buffered,
        }
    }
}

/// An encoded batch waiting to be published.
struct Pending {
    payload: Vec<u8>,
    /// The trace context of its collection cycle (empty when spans are not exported).
    cycle: HashMap<String, String>,
}

/// The bounded buffer between collection and the sender.
struct Buffer {
    queue: Mutex<VecDeque<Pending>>,
    capacity: usize,
    ready: Notify,
}

impl Buffer {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends a batch; returns how many old batches were dropped to make room.
    fn push(&self, batch: Pending) -> usize {
        let mut queue = self.lock();
        let mut dropped = 0;
        while queue.len() >= self.capacity {
            queue.pop_front();
            dropped += 1;
        }
        queue.push_back(batch);
        drop(queue);
        self.ready.notify_one();
        dropped
    }
}

/// The protobuf batch of `snapshot`, number `sequence` of this process.
pub fn encode(snapshot: &Snapshot, sequence: u64) -> MetricBatch {
    MetricBatch {
        host: snapshot.host.clone(),
        timestamp_ms: snapshot.timestamp_ms,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        correlation_id: uuid::Uuid::new_v4().to_string(),
        trace_context: Default::default(),
        sequence,
        samples: snapshot
            .samples
            .iter()
            .map(|sample| WireSample {
                name: sample.name.clone(),
                labels: sample
                    .labels
                    .iter()
                    .map(|(name, value)| Label {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                value: sample.value,
                kind: match sample.kind {
                    Kind::Counter => WireKind::Counter,
                    Kind::Gauge => WireKind::Gauge,
                } as i32,
            })
            .collect(),
    }
}

/// The host's current values in the Prometheus text format, one family after another.
fn render_snapshot(snapshot: &Snapshot) -> String {
    let mut samples: Vec<_> = snapshot.samples.iter().collect();
    samples.sort_by(|a, b| a.name.cmp(&b.name));
    let mut writer = TextWriter::default();
    let mut family = "";
    for sample in samples {
        if sample.name != family {
            family = &sample.name;
            let kind = match sample.kind {
                Kind::Counter => FamilyType::Counter,
                Kind::Gauge => FamilyType::Gauge,
            };
            writer.family(family, kind, Some("Host metric collected by gomon agent."));
        }
        writer.sample(
            &sample.name,
            sample
                .labels
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
            sample.value,
            None,
        );
    }
    writer.finish()
}

#[derive(Clone)]
struct HttpState {
    latest: Arc<Mutex<Option<Snapshot>>>,
    registry: Registry,
}

async fn serve_metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let mut text = state
        .latest
        .lock()
        .map(|latest| latest.as_ref().map(render_snapshot).unwrap_or_default())
        .unwrap_or_default();
    text.push_str(&gomon_runtime::metrics::render(&state.registry));
    (
        [(header::CONTENT_TYPE, gomon_runtime::metrics::CONTENT_TYPE)],
        text,
    )
}

async fn ready(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    let collected = state
        .latest
        .lock()
        .map(|latest| latest.is_some())
        .unwrap_or(false);
    if collected {
        (StatusCode::OK, "{\"status\":\"ok\"}")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"status\":\"unavailable\",\"reason\":\"no collection yet\"}",
        )
    }
}

/// The span of one collection cycle, the root of a batch's trace; none when spans are not exported.
fn cycle_span(host: &str, sequence: u64) -> tracing::Span {
    if !telemetry::enabled() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "agent.cycle",
        otel.name = "collect",
        host,
        sequence,
        correlation_id = tracing::field::Empty,
        samples = tracing::field::Empty,
    )
}

/// The span of one attempt to publish a batch, a child of its cycle's span.
fn publish_span(cycle: &HashMap<String, String>, destination: &str) -> tracing::Span {
    if !telemetry::enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "agent.publish",
        otel.name = %format_args!("publish {destination}"),
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.destination.name = destination,
        otel.status_code = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    telemetry::set_parent(&span, cycle);
    span
}

/// Where the agent's encoded batches go.
pub enum Outlet {
    /// Kafka: the `gomon agent` role.
    Kafka(Box<Publisher>),
    /// An in-process queue whose other end the aggregator reads (`gomon up`).
    Queue(tokio::sync::mpsc::Sender<Vec<u8>>),
}

impl Outlet {
    /// Where batches go, as a span names it: the Kafka topic, or the in-process queue.
    fn kind(&self) -> &str {
        match self {
            Outlet::Kafka(publisher) => publisher.topic(),
            Outlet::Queue(_) => "in-process queue",
        }
    }

    async fn prepare(&mut self) -> Result<(), String> {
        match self {
            Outlet::Kafka(publisher) => publisher.ensure_topic().await,
            Outlet::Queue(_) => Ok(()),
        }
    }

    /// Sends one batch; `trace_context` goes along as Kafka headers (the in-process queue has the batch's own).
    async fn send(
        &mut self,
        key: &str,
        payload: &[u8],
        trace_context: &HashMap<String, String>,
    ) -> Result<(), String> {
        match self {
            Outlet::Kafka(publisher) => publisher.send(key, payload, trace_context).await,
            Outlet::Queue(queue) => queue
                .send(payload.to_vec())
                .await
                .map_err(|_| "the in-process queue is closed".to_owned()),
        }
    }
}

/// How long a stopping agent keeps trying to publish the batches it holds.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// First wait before publishing a failed batch again; doubles (with jitter) up to [`PUBLISH_MAX_BACKOFF`].
const PUBLISH_MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between two tries of a batch.
const PUBLISH_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Completes when a stopping sender's time is up: at `deadline`, or [`STOP_GRACE`] after shutdown fires; returns
/// that time.
async fn out_of_time(shutdown: &Shutdown, deadline: Option<Instant>) -> Instant {
    shutdown.clone().wait().await;
    let deadline = deadline.unwrap_or_else(|| Instant::now() + STOP_GRACE);
    tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
    deadline
}

/// Publishes the buffer's batches in order until shutdown, then tries for [`STOP_GRACE`] to empty it: a send still
/// unacknowledged then (brokers away, a full in-process queue) is given up.
async fn send_batches(
    mut publisher: Outlet,
    host: String,
    buffer: Arc<Buffer>,
    metrics: Metrics,
    shutdown: Shutdown,
) {
    tokio::select! {
        prepared = publisher.prepare() => {
            if let Err(error) = prepared {
                tracing::warn!(%error, "cannot create the Kafka topic");
            }
        }
        () = shutdown.clone().wait() => {}
    }
    let mut backoff = Backoff::new(PUBLISH_MIN_BACKOFF, PUBLISH_MAX_BACKOFF);
    let mut deadline: Option<Instant> = None;
    loop {
        if shutdown.is_triggered() && deadline.is_none() {
            deadline = Some(Instant::now() + STOP_GRACE);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let left = buffer.lock().len();
            if left > 0 {
                tracing::warn!(batches = left, "stopping with batches not published");
            }
            return;
        }
        let head = buffer
            .lock()
            .front()
            .map(|batch| (batch.payload.clone(), batch.cycle.clone()));
        let Some((payload, cycle)) = head else {
            if deadline.is_some() {
                return;
            }
            tokio::select! {
                () = buffer.ready.notified() => {}
                () = shutdown.clone().wait() => {}
            }
            continue;
        };
        let span = publish_span(&cycle, publisher.kind());
        let trace_context = telemetry::inject(&span);
        let sent = tokio::select! {
            sent = publisher.send(&host, &payload, &trace_context).instrument(span.clone()) => sent,
            ended = out_of_time(&shutdown, deadline) => {
                deadline = Some(ended);
                Err("stopping: not acknowledged in time".to_owned())
            }
        };
        if let Err(error) = &sent {
            span.record("otel.status_code", "ERROR");
            span.record("error", error.as_str());
        }
        drop(span);
        match sent {
            Ok(()) => {
                buffer.lock().pop_front();
                metrics.sent.inc();
                backoff.reset();
            }
            Err(error) => {
                metrics.failed.inc();
                let wait = backoff.next_wait();
                tracing::warn!(%error, retry_in = ?wait, "cannot publish to Kafka; the batch stays buffered");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.clone().wait() => {}
                }
            }
        }
        metrics
            .buffered
            .set(i64::try_from(buffer.lock().len()).unwrap_or(i64::MAX));
    }
}

/// Runs the agent until `shutdown` fires: publishing to Kafka, serving `agent.listen`. `config` has passed
/// [`AgentConfig::check`] (`gomon` checks it once, at start-up).
pub async fn run(
    config: AgentConfig,
    registry: Registry,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let publisher = Outlet::Kafka(Box::new(Publisher::new(&config.kafka)?));
    // The agent runs on every node, where its resident set is its cost: once start-up is over (the first cycles
    // collected, the broker connected), the pages only start-up used are given back.
    let settle = config.interval.saturating_mul(SETTLE_CYCLES);
    let release = tokio::spawn(async move {
        tokio::time::sleep(settle).await;
        match gomon_runtime::memory::release_startup_pages() {
            Ok(released_kb) => tracing::debug!(released_kb, "start-up pages given back"),
            Err(error) => tracing::warn!(%error, "cannot give back start-up pages"),
        }
    });
    let result = run_with(config, registry, shutdown, publisher, true).await;
    release.abort();
    result
}

/// Cycles after which the agent process gives back the pages only start-up used.
const SETTLE_CYCLES: u32 = 3;

/// Runs the agent until `shutdown` fires, sending its batches to `publisher`; it serves `agent.listen` only when
/// `serve` is set (`gomon up` serves everything on one listener of its own).
pub async fn run_with(
    config: AgentConfig,
    registry: Registry,
    shutdown: Shutdown,
    publisher: Outlet,
    serve: bool,
) -> anyhow::Result<()> {
    let mut collector = Collector::new(config.clone())?;
    let metrics = Metrics::new(&registry);
    let buffer = Arc::new(Buffer {
        queue: Mutex::new(VecDeque::new()),
        capacity: config.buffer_batches,
        ready: Notify::new(),
    });
    let latest = Arc::new(Mutex::new(None));
    let mut tasks = tokio::task::JoinSet::new();
    if serve {
        let listener = TcpListener::bind(config.listen).await.map_err(|error| {
            anyhow::anyhow!("agent.listen: cannot listen on {}: {error}", config.listen)
        })?;
        tracing::info!(listen = %listener.local_addr()?, "agent serving /metrics");
        let router = Router::new()
            .route("/metrics", get(serve_metrics))
            .route("/health/live", get(|| async { "{\"status\":\"ok\"}" }))
            .route("/health/ready", get(ready))
            .with_state(HttpState {
                latest: latest.clone(),
                registry,
            });
        tasks.spawn(gomon_runtime::http::serve(
            SharedListener(Arc::new(listener)),
            router,
            shutdown.clone(),
            config.http.clone(),
        ));
    }
    match &publisher {
        Outlet::Kafka(_) => tracing::info!(
            host = collector.host(),
            interval = ?config.interval,
            brokers = %config.kafka.brokers,
            topic = %config.kafka.topic,
            "agent started"
        ),
        Outlet::Queue(_) => tracing::info!(
            host = collector.host(),
            interval = ?config.interval,
            "agent started, publishing in process"
        ),
    }
    let sender = tokio::spawn(send_batches(
        publisher,
        collector.host().to_owned(),
        buffer.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sequence = 0u64;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.clone().wait() => break,
        }
        let started = Instant::now();
        sequence += 1;
        let cycle = cycle_span(collector.host(), sequence);
        let snapshot = collector.collect().instrument(cycle.clone()).await;
        metrics.collection.observe(started.elapsed().as_secs_f64());
        let mut batch = encode(&snapshot, sequence);
        let trace_context = telemetry::inject(&cycle);
        batch.trace_context = trace_context.clone().into_iter().collect();
        cycle.record("correlation_id", batch.correlation_id.as_str());
        cycle.record("samples", batch.samples.len());
        drop(cycle);
        let payload = gomon_proto::encode_batch(&batch);
        let dropped = buffer.push(Pending {
            payload,
            cycle: trace_context,
        });
        if dropped > 0 {
            metrics.dropped.inc_by(dropped as u64);
            tracing::warn!(dropped, "buffer full: oldest batches dropped");
        }
        metrics
            .buffered
            .set(i64::try_from(buffer.lock().len()).unwrap_or(i64::MAX));
        if let Ok(mut latest) = latest.lock() {
            *latest = Some(snapshot);
        }
    }
    sender.await?;
    while let Some(served) = tasks.join_next().await {
        served??;
    }
    tracing::info!("agent stopped");
    Ok(())
}
