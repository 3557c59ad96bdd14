//! The aggregator's own metrics, served on `/metrics`.

use gomon_runtime::metrics::must;
use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::sinks::remote_write::Blocked;

/// Every metric of the aggregator, registered once.
#[derive(Clone)]
pub struct Metrics {
    /// `aggregator_messages_consumed_total`
    pub consumed: IntCounter,
    /// `aggregator_messages_invalid_total{reason}`
    pub invalid: IntCounterVec,
    /// `aggregator_dead_letter_messages_total{outcome}`
    pub dead_letter: IntCounterVec,
    /// `aggregator_samples_written_total`
    pub written: IntCounter,
    /// `aggregator_samples_dropped_total{reason}`
    pub dropped: IntCounterVec,
    /// `aggregator_write_requests_total{outcome}`
    pub requests: IntCounterVec,
    /// `aggregator_write_retries_total`
    pub retries: IntCounter,
    /// `aggregator_write_duration_seconds`
    pub write_duration: Histogram,
    /// `aggregator_pipeline_latency_seconds`
    pub pipeline_latency: Histogram,
    /// `aggregator_writes_in_flight`
    pub in_flight: IntGauge,
    /// `aggregator_consumer_lag{topic,partition}`
    pub lag: IntGaugeVec,
    /// `aggregator_commits_total{outcome}`
    pub commits: IntCounterVec,
    /// `aggregator_dead_letter_failing`
    pub dead_letter_failing: IntGauge,
    /// `aggregator_remote_write_blocked{reason}`
    pub blocked: IntGaugeVec,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str| must(IntCounter::new(name, help));
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            must(IntCounterVec::new(Opts::new(name, help), labels))
        };
        let metrics = Self {
            consumed: counter(
                "aggregator_messages_consumed_total",
                "Kafka messages read, valid or not.",
            ),
            invalid: counter_vec(
                "aggregator_messages_invalid_total",
                "Messages set aside because they are not a valid batch or exceed a limit, by reason.",
                &["reason"],
            ),
            dead_letter: counter_vec(
                "aggregator_dead_letter_messages_total",
                "Copies of invalid messages to the dead-letter topic: done (ok) or failed and to be retried (error).",
                &["outcome"],
            ),
            written: counter(
                "aggregator_samples_written_total",
                "Samples accepted by the remote write receiver.",
            ),
            dropped: counter_vec(
                "aggregator_samples_dropped_total",
                "Samples the receiver refused for good (400, 422, any 4xx but 401, 403, 404, 405, 407 and 429), by reason.",
                &["reason"],
            ),
            requests: counter_vec(
                "aggregator_write_requests_total",
                "Remote write requests by outcome: ok, retryable, blocked or permanent.",
                &["outcome"],
            ),
            retries: counter(
                "aggregator_write_retries_total",
                "Remote write requests sent again after a retryable failure.",
            ),
            write_duration: must(Histogram::with_opts(
                HistogramOpts::new(
                    "aggregator_write_duration_seconds",
                    "Time one remote write request takes, retries not included.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )),
            pipeline_latency: must(Histogram::with_opts(
                HistogramOpts::new(
                    "aggregator_pipeline_latency_seconds",
                    "From a batch's collection on its host to the receiver's acceptance of its samples.",
                )
                .buckets(vec![
                    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                ]),
            )),
            in_flight: must(IntGauge::new(
                "aggregator_writes_in_flight",
                "Remote write requests sent or waiting to be retried.",
            )),
            lag: must(IntGaugeVec::new(
                Opts::new(
                    "aggregator_consumer_lag",
                    "Messages in a partition not yet consumed by this aggregator, as the brokers last reported.",
                ),
                &["topic", "partition"],
            )),
            commits: counter_vec(
                "aggregator_commits_total",
                "Offset commits by outcome (ok or error).",
                &["outcome"],
            ),
            dead_letter_failing: must(IntGauge::new(
                "aggregator_dead_letter_failing",
                "1 while the dead-letter topic is missing or a copy to it is being retried (consumption waits).",
            )),
            blocked: must(IntGaugeVec::new(
                Opts::new(
                    "aggregator_remote_write_blocked",
                    "1 while the receiver refuses our credentials or URL (the samples are kept and retried), by reason.",
                ),
                &["reason"],
            )),
        };
        for invalid in crate::transform::Invalid::ALL {
            metrics.invalid.with_label_values(&[invalid.reason()]);
        }
        metrics.dropped.with_label_values(&["permanent"]);
        for outcome in ["ok", "retryable", "blocked", "permanent"] {
            metrics.requests.with_label_values(&[outcome]);
        }
        for outcome in ["ok", "error"] {
            metrics.commits.with_label_values(&[outcome]);
            metrics.dead_letter.with_label_values(&[outcome]);
        }
        for reason in Blocked::ALL {
            metrics.blocked.with_label_values(&[reason.reason()]);
        }
        let collectors: [Box<dyn Collector>; 14] = [
            Box::new(metrics.consumed.clone()),
            Box::new(metrics.invalid.clone()),
            Box::new(metrics.dead_letter.clone()),
            Box::new(metrics.written.clone()),
            Box::new(metrics.dropped.clone()),
            Box::new(metrics.requests.clone()),
            Box::new(metrics.retries.clone()),
            Box::new(metrics.write_duration.clone()),
            Box::new(metrics.pipeline_latency.clone()),
            Box::new(metrics.in_flight.clone()),
            Box::new(metrics.lag.clone()),
            Box::new(metrics.commits.clone()),
            Box::new(metrics.dead_letter_failing.clone()),
            Box::new(metrics.blocked.clone()),
        ];
        for collector in collectors {
            must(registry.register(collector));
        }
        metrics
    }
}
