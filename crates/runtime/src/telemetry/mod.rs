//! Traces: spans exported over OTLP/HTTP (protobuf) to Jaeger or any OpenTelemetry collector, and the W3C trace
//! context carried across Kafka and HTTP.
//!
//! Off unless an endpoint is set, by `tracing.endpoint` or the standard `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`.
//! Only GoMon's own spans (targets `gomon*`) are exported. Export never holds up the work: finished spans go into a
//! bounded queue that a thread of its own empties in batches; a span that finds the queue full, or whose batch the
//! collector refuses, is dropped and counted in `gomon_trace_spans_dropped_total`.

mod config;
mod export;
mod propagation;
mod queue;

pub use config::{SamplerChoice, Settings, TracingConfig};
pub(crate) use propagation::ids;
pub use propagation::{inject, sampled_trace_id, set_parent};

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use self::queue::QueueProcessor;
use crate::metrics::must;

/// Whether spans are exported in this process (set once by [`Tracing::start`]). Code on hot paths checks it to
/// create no span at all when nobody would see it.
pub fn enabled() -> bool {
    EXPORTING_TO.get().is_some()
}

/// Where spans go, when they are exported.
pub fn exporting_to() -> Option<&'static str> {
    EXPORTING_TO.get().map(String::as_str)
}

static EXPORTING_TO: OnceLock<String> = OnceLock::new();

/// The exporting side of the process's tracing: the provider to install in the subscriber, and its shutdown.
pub struct Tracing {
    provider: SdkTracerProvider,
}

/// The counters of the export queue.
#[derive(Clone)]
struct ExportMetrics {
    exported: IntCounter,
    dropped: IntCounterVec,
}

impl Tracing {
    /// Starts the export thread for `settings`, registering its counters in `registry`.
    pub fn start(settings: Settings, registry: &Registry) -> Result<Self, String> {
        let exported = must(IntCounter::new(
            "gomon_trace_spans_exported_total",
            "Spans the collector accepted.",
        ));
        let dropped = must(IntCounterVec::new(
            Opts::new(
                "gomon_trace_spans_dropped_total",
                "Spans dropped, by reason: queue_full (export was behind) or export_failed (the collector refused \
                 or could not be reached).",
            ),
            &["reason"],
        ));
        for reason in ["queue_full", "export_failed"] {
            dropped.with_label_values(&[reason]);
        }
        must(registry.register(Box::new(exported.clone())));
        must(registry.register(Box::new(dropped.clone())));
        let metrics = ExportMetrics { exported, dropped };
        let resource = Resource::builder()
            .with_service_name(settings.service_name.clone())
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();
        let processor = QueueProcessor::start(&settings, &resource, metrics)?;
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(settings.sampler.sampler())
            .with_resource(resource)
            .build();
        let _ = EXPORTING_TO.set(settings.traces_url.clone());
        Ok(Self { provider })
    }

    /// A tracer for the `tracing` bridge.
    pub fn tracer(&self) -> opentelemetry_sdk::trace::Tracer {
        self.provider.tracer("gomon")
    }

    /// Sends what is queued (waiting up to the export timeout) and stops the export thread.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("gomon: spans not all exported at exit: {error}");
        }
    }
}
