//! The pipeline: messages from a [`Source`] are decoded and transformed into series, gathered into requests bounded
//! in samples and in delay, written with up to `concurrency` requests in flight, and their positions committed back
//! to the source in order, only once every earlier request was accepted (at least once).
//!
//! While the receiver is down or refuses our credentials or URL, the requests are retried with backoff; once
//! `concurrency` requests wait and the next is full, the source is not read: memory stays bounded and the brokers
//! keep the backlog. Stopping never waits longer than `shutdown_timeout` for the receiver: what it has not accepted
//! by then is not committed.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use gomon_proto::metrics::v1::MetricBatch;
use gomon_proto::prometheus::TimeSeries;
use gomon_runtime::shutdown::{Shutdown, Trigger};
use gomon_runtime::telemetry;
use opentelemetry::trace::TraceContextExt as _;
use tokio::time::Instant;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::metrics::Metrics;
use crate::sinks::federate::Latest;
use crate::sinks::hosts::HostWindow;
use crate::sinks::remote_write::{self, Blocked, RemoteWriter, WriteError};
use crate::transform::{self, Invalid};

/// One message as the source delivered it.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The encoded batch.
    pub payload: Vec<u8>,
    /// Partition it was read from.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// The W3C trace context its headers carried (`traceparent`, `tracestate`); read only when spans are exported.
    pub trace_context: HashMap<String, String>,
}

/// Next offset to read, by partition: what a commit records.
pub type Positions = HashMap<i32, i64>;

/// Where messages come from: a Kafka consumer group, or the in-process queue of `gomon up`.
pub trait Source: Send {
    /// The next message; `None` when the source has ended.
    fn next(&mut self) -> impl Future<Output = Option<Delivery>> + Send;
    /// Records that everything before `positions` was handled.
    fn commit(&mut self, positions: &Positions);
    /// Keeps a copy of a message that is not a valid batch (a dead-letter topic), if the source has such a place.
    fn set_aside(
        &mut self,
        delivery: &Delivery,
        reason: Invalid,
    ) -> impl Future<Output = ()> + Send;
    /// Whether a stopping pipeline reads on until the source ends, its writers stopping by themselves (the
    /// in-process queue); otherwise it stops reading at once and the source keeps the rest (Kafka).
    fn drains(&self) -> bool {
        false
    }
    /// Final commit, before the process ends; waits for it no later than `deadline` (what is not committed then is
    /// replayed).
    fn close(self, deadline: std::time::Instant);
}

/// Sizes and delays of the pipeline.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most samples in one request.
    pub max_samples: usize,
    /// Longest a message waits for its request to fill.
    pub max_delay: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// How long a stopping pipeline waits for requests in flight.
    pub shutdown_timeout: Duration,
}

/// Where series go.
#[derive(Clone)]
pub struct Sinks {
    /// The remote write receiver, if one is configured.
    pub remote: Option<RemoteWriter>,
    /// The `/federate` store, if it is served.
    pub federate: Option<Arc<Latest>>,
    /// The hosts' recent measures, if the console of this process shows them.
    pub hosts: Option<Arc<HostWindow>>,
    /// Labels added to every series: external labels, `job` and `instance`.
    pub added_labels: Arc<transform::AddedLabels>,
    /// What one message may hold.
    pub limits: Arc<crate::config::LimitsConfig>,
}

/// Messages gathered for the next request.
#[derive(Default)]
struct Open {
    series: Vec<TimeSeries>,
    positions: Positions,
    collected_ms: Vec<i64>,
    /// The processing span of each message, with its collection time, when spans are exported.
    traced: Vec<(tracing::Span, i64)>,
    since: Option<Instant>,
}

/// A request's end.
enum Outcome {
    /// Accepted (or nothing to write).
    Written,
    /// Refused for good: the samples are dropped and counted.
    Dropped,
    /// Still failing when the pipeline stopped: not committed, to be replayed.
    Abandoned,
}

struct Done {
    positions: Positions,
    outcome: Outcome,
}

/// What the remote write receiver's last answer says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SinkState {
    /// It accepts writes (or was not asked yet).
    #[default]
    Ok,
    /// It is down or overloaded: requests are retried.
    Retrying,
    /// It refuses our credentials or URL: requests are kept and retried, and the aggregator is not ready.
    Blocked(Blocked),
}

/// The remote write receiver's state, for `/health/ready` and `aggregator_remote_write_blocked`.
#[derive(Clone, Debug, Default)]
pub struct SinkHealth(Arc<Mutex<SinkState>>);

impl SinkHealth {
    /// The state of the last answer.
    pub fn state(&self) -> SinkState {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the state of an answer and sets the blocked gauge to match; returns the state before.
    fn set(&self, state: SinkState, metrics: &Metrics) -> SinkState {
        let mut current = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let before = std::mem::replace(&mut *current, state);
        if before != state {
            for reason in Blocked::ALL {
                metrics
                    .blocked
                    .with_label_values(&[reason.reason()])
                    .set(i64::from(state == SinkState::Blocked(reason)));
            }
        }
        before
    }
}

/// The least time a stopping pipeline gives its final commit, even when the writes took all of `shutdown_timeout`.
const FINAL_COMMIT: Duration = Duration::from_millis(500);

/// Runs the pipeline until `shutdown` fires (a source that drains: until it ends) or the source ends, then writes
/// what it holds within `shutdown_timeout` of `shutdown` and commits what was accepted.
pub async fn run<S: Source>(
    mut source: S,
    sinks: Sinks,
    limits: Limits,
    metrics: Metrics,
    health: SinkHealth,
    shutdown: Shutdown,
) {
    let (abandon, abandoned) = Shutdown::new();
    let mut abandon = Some(abandon);
    let mut open = Open::default();
    let mut in_flight = FuturesOrdered::new();
    // False once a request was abandoned: nothing after it may be committed.
    let mut committing = true;
    // When shutdown fired.
    let mut stopping: Option<Instant> = None;
    let drains = source.drains();
    loop {
        let slot_free = in_flight.len() < limits.concurrency;
        // The next request is full and no slot is free: read nothing more until a request finishes.
        let backpressure = open.series.len() >= limits.max_samples && !slot_free;
        // Only while a slot is free: an overdue request waiting for one would wake this loop at once, every turn.
        let deadline = open
            .since
            .filter(|_| slot_free)
            .map(|since| since + limits.max_delay);
        tokio::select! {
            biased;
            () = shutdown.clone().wait(), if stopping.is_none() => {
                stopping = Some(begin_stop(&mut abandon, limits.shutdown_timeout));
                if !drains {
                    break;
                }
            }
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                finish(&mut source, done, &metrics, &mut committing);
            }
            delivery = source.next(), if !backpressure => {
                let Some(delivery) = delivery else { break };
                take(&mut source, &mut open, delivery, &sinks, &metrics).await;
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
        }
        let overdue = open
            .since
            .is_some_and(|since| since.elapsed() >= limits.max_delay);
        if (open.series.len() >= limits.max_samples || overdue)
            && in_flight.len() < limits.concurrency
        {
            let closed = std::mem::take(&mut open);
            in_flight.push_back(write(closed, &sinks, &metrics, &health, &abandoned));
            metrics.in_flight.set(in_flight.len() as i64);
        }
    }
    // Stopping: write what is gathered, wait for what is in flight (within the grace period), commit what was
    // accepted.
    let stopped = stopping.unwrap_or_else(|| begin_stop(&mut abandon, limits.shutdown_timeout));
    if open.since.is_some() {
        in_flight.push_back(write(open, &sinks, &metrics, &health, &abandoned));
    }
    while committing && let Some(done) = in_flight.next().await {
        finish(&mut source, done, &metrics, &mut committing);
    }
    metrics.in_flight.set(0);
    let deadline = (stopped + limits.shutdown_timeout).max(Instant::now() + FINAL_COMMIT);
    source.close(deadline.into_std());
}

/// Starts a stopping pipeline's grace period: writes still unanswered `grace` from now are abandoned.
fn begin_stop(abandon: &mut Option<Trigger>, grace: Duration) -> Instant {
    if let Some(abandon) = abandon.take() {
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            abandon.fire();
        });
    }
    Instant::now()
}

/// Decodes and transforms one message into the open request (or sets it aside).
async fn take<S: Source>(
    source: &mut S,
    open: &mut Open,
    delivery: Delivery,
    sinks: &Sinks,
    metrics: &Metrics,
) {
    metrics.consumed.inc();
    open.since.get_or_insert_with(Instant::now);
    open.positions
        .insert(delivery.partition, delivery.offset + 1);
    let start = open.series.len();
    let decoded = transform::decode_within(&delivery.payload, &sinks.limits, now_ms());
    let span = process_span(&delivery, decoded.as_ref().ok());
    let added = decoded.and_then(|batch| {
        let host = batch.host.clone();
        let timestamp_ms = batch.timestamp_ms;
        // The kinds only `/federate` needs (remote write 1.0 carries none).
        let kinds: Vec<i32> = match sinks.federate {
            Some(_) => batch.samples.iter().map(|sample| sample.kind).collect(),
            None => Vec::new(),
        };
        let _entered = span.enter();
        transform::append_series(batch, &sinks.added_labels, &mut open.series)
            .map(|()| (host, timestamp_ms, kinds))
    });
    match added {
        Ok((host, timestamp_ms, kinds)) => {
            open.collected_ms.push(timestamp_ms);
            if let Some(federate) = &sinks.federate {
                federate.update(&host, timestamp_ms, &open.series[start..], &kinds);
            }
            if let Some(hosts) = &sinks.hosts {
                hosts.update(&host, timestamp_ms, &open.series[start..]);
            }
            if telemetry::enabled() {
                span.record("samples", open.series.len() - start);
                open.traced.push((span, timestamp_ms));
            }
        }
        Err(reason) => {
            span.record("otel.status_code", "ERROR");
            span.record("error", reason.reason());
            metrics.invalid.with_label_values(&[reason.reason()]).inc();
            span.in_scope(|| {
                tracing::warn!(
                    partition = delivery.partition,
                    offset = delivery.offset,
                    reason = reason.reason(),
                    error = %reason,
                    bytes = delivery.payload.len(),
                    "message set aside: not a valid batch"
                );
            });
            source.set_aside(&delivery, reason).instrument(span).await;
        }
    }
}

/// The span of processing one message: a child of the agent's span that published it, across Kafka (from the
/// message's headers, else the batch's own trace context). None when spans are not exported.
fn process_span(delivery: &Delivery, batch: Option<&MetricBatch>) -> tracing::Span {
    if !telemetry::enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "aggregator.process",
        otel.name = "process metrics",
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.kafka.partition = delivery.partition,
        messaging.kafka.offset = delivery.offset,
        correlation_id = batch.map(|batch| batch.correlation_id.as_str()),
        host = batch.map(|batch| batch.host.as_str()),
        samples = tracing::field::Empty,
        pipeline.latency_ms = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    if delivery.trace_context.contains_key("traceparent") {
        telemetry::set_parent(&span, &delivery.trace_context);
    } else if let Some(batch) = batch {
        let fields: HashMap<String, String> = batch
            .trace_context
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        telemetry::set_parent(&span, &fields);
    }
    span
}

/// The span of one remote write request (every attempt): a child of the first message's processing span, linked
/// to the others'. None when spans are not exported or nothing is traced.
fn write_span(traced: &[(tracing::Span, i64)], url: &reqwest::Url, samples: u64) -> tracing::Span {
    let Some(((first, _), rest)) = traced.split_first() else {
        return tracing::Span::none();
    };
    let span = tracing::info_span!(
        parent: first,
        "aggregator.remote_write",
        otel.name = "remote write",
        otel.kind = "client",
        url.full = %url,
        samples,
        messages = traced.len(),
        attempts = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    for (other, _) in rest {
        span.add_link(other.context().span().span_context().clone());
    }
    span
}

/// Commits a finished request's positions, unless a request before it was abandoned.
fn finish<S: Source>(source: &mut S, done: Done, metrics: &Metrics, committing: &mut bool) {
    metrics.in_flight.dec();
    if matches!(done.outcome, Outcome::Abandoned) {
        if std::mem::replace(committing, false) {
            tracing::warn!(
                "stopping with writes the receiver has not accepted: not committed (Kafka replays them)"
            );
        }
    } else if *committing && !done.positions.is_empty() {
        source.commit(&done.positions);
    }
}

/// Writes one request, retrying while the receiver is down or blocked, until accepted, refused for good, or
/// abandoned.
fn write(
    closed: Open,
    sinks: &Sinks,
    metrics: &Metrics,
    health: &SinkHealth,
    abandoned: &Shutdown,
) -> impl Future<Output = Done> + Send + 'static {
    let remote = sinks.remote.clone();
    let metrics = metrics.clone();
    let health = health.clone();
    let abandoned = abandoned.clone();
    async move {
        let Open {
            series,
            positions,
            collected_ms,
            traced,
            ..
        } = closed;
        let samples = series.len() as u64;
        let Some(remote) = remote.filter(|_| samples > 0) else {
            return Done {
                positions,
                outcome: Outcome::Written,
            };
        };
        let gave_up = || Done {
            positions: Positions::new(),
            outcome: Outcome::Abandoned,
        };
        // Out of time while a stopping `gomon up` drains its queue: nothing more is sent.
        if abandoned.is_triggered() {
            return gave_up();
        }
        let body = Bytes::from(remote_write::encode(series));
        let span = write_span(&traced, remote.url(), samples);
        let mut attempt = 0u32;
        loop {
            let started = std::time::Instant::now();
            let result = tokio::select! {
                result = remote.send(body.clone()).instrument(span.clone()) => result,
                () = abandoned.clone().wait() => return gave_up(),
            };
            metrics
                .write_duration
                .observe(started.elapsed().as_secs_f64());
            let (message, retry_after, blocked) = match result {
                Ok(()) => {
                    metrics.requests.with_label_values(&["ok"]).inc();
                    metrics.written.inc_by(samples);
                    let now_ms = now_ms();
                    for collected in collected_ms {
                        metrics
                            .pipeline_latency
                            .observe((now_ms - collected).max(0) as f64 / 1000.0);
                    }
                    span.record("attempts", attempt + 1);
                    for (process, collected) in &traced {
                        process.record("pipeline.latency_ms", (now_ms - collected).max(0));
                    }
                    if health.set(SinkState::Ok, &metrics) != SinkState::Ok {
                        tracing::info!(url = %remote.url(), "remote write receiver accepts writes again");
                    }
                    return Done {
                        positions,
                        outcome: Outcome::Written,
                    };
                }
                Err(WriteError::Permanent { message }) => {
                    // It answers, and takes our credentials: neither retrying nor blocked.
                    health.set(SinkState::Ok, &metrics);
                    metrics.requests.with_label_values(&["permanent"]).inc();
                    metrics
                        .dropped
                        .with_label_values(&["permanent"])
                        .inc_by(samples);
                    for span in std::iter::once(&span).chain(traced.iter().map(|(span, _)| span)) {
                        span.record("otel.status_code", "ERROR");
                        span.record("error", message.as_str());
                    }
                    span.in_scope(|| {
                        tracing::error!(url = %remote.url(), samples, answer = %message, "remote write refused the samples; dropped");
                    });
                    return Done {
                        positions,
                        outcome: Outcome::Dropped,
                    };
                }
                Err(WriteError::Retryable {
                    message,
                    retry_after,
                }) => (message, retry_after, None),
                Err(WriteError::Blocked { reason, message }) => (message, None, Some(reason)),
            };
            attempt += 1;
            let wait = remote.backoff(attempt, retry_after);
            if let Some(reason) = blocked {
                metrics.requests.with_label_values(&["blocked"]).inc();
                health.set(SinkState::Blocked(reason), &metrics);
                span.in_scope(|| {
                    tracing::error!(url = %remote.url(), reason = reason.reason(), answer = %message, samples, attempt, retry_in = ?wait, "remote write receiver refuses our credentials or URL; the samples are kept and retried");
                });
            } else {
                metrics.requests.with_label_values(&["retryable"]).inc();
                if health.set(SinkState::Retrying, &metrics) != SinkState::Retrying
                    || attempt % 10 == 1
                {
                    span.in_scope(|| {
                        tracing::warn!(url = %remote.url(), error = %message, attempt, retry_in = ?wait, "remote write failed; retrying");
                    });
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = abandoned.clone().wait() => return gave_up(),
            }
            metrics.retries.inc();
        }
    }
}

/// The wall clock in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
