//! Logs on stdout, filtered by `GOMON_LOG` (or `RUST_LOG`; default `info`), and the bridge from `tracing` spans to
//! OpenTelemetry when traces are exported.
//!
//! The roles write JSON, one object per line: `timestamp`, `level`, `target`, `message` and the event's fields;
//! written inside a span that is traced, also `trace_id` and `span_id` (lowercase hex, as Jaeger shows them). A
//! person at a terminal can have lines to read instead ([`LogFormat::Text`]).

use std::fmt;
use std::io::IsTerminal as _;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::filter::{EnvFilter, FilterExt as _, filter_fn};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::{LookupSpan, Registry};

use crate::telemetry;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    #[default]
    Json,
    /// A line for a person: time, level, where, message and fields; coloured on a terminal.
    Text,
}

/// Installs the global subscriber: logs in `format`, and the OpenTelemetry bridge when `tracer` is given (only
/// GoMon's own spans, whatever the log filter). Call once, first thing in `main`.
///
/// Returns the filter that was applied, or an error naming the variable when its value does not parse.
pub fn init(
    tracer: Option<opentelemetry_sdk::trace::Tracer>,
    format: LogFormat,
) -> Result<String, String> {
    let (variable, directives) = ["GOMON_LOG", "RUST_LOG"]
        .iter()
        .find_map(|name| std::env::var(name).ok().map(|value| (*name, value)))
        .unwrap_or(("default", "info".to_string()));
    let filter = EnvFilter::builder()
        .parse(&directives)
        .map_err(|error| format!("invalid log filter in {variable}={directives:?}: {error}"))?;
    // Events only: log lines never show span fields, and no span is made for the logs' sake.
    let events = filter.and(filter_fn(|metadata| metadata.is_event()));
    let logs = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(JsonLine)
            .with_writer(std::io::stdout)
            .with_filter(events)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stdout().is_terminal())
            .with_writer(std::io::stdout)
            .with_filter(events)
            .boxed(),
    };
    let spans = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_threads(false)
            .with_location(false)
            .with_filter(filter_fn(|metadata| {
                metadata.is_span()
                    && metadata.target().starts_with("gomon")
                    && *metadata.level() <= tracing::Level::INFO
            }))
    });
    // Only the first call installs (with the bridge from the `log` crate); later ones (tests) keep the first.
    if Registry::default()
        .with(spans)
        .with(logs)
        .try_init()
        .is_ok()
    {
        let _ = DISPATCH.set(tracing::dispatcher::get_default(Dispatch::downgrade));
    }
    Ok(directives)
}

/// The installed subscriber, for finding the trace context of the span a log line is written in.
static DISPATCH: OnceLock<tracing::dispatcher::WeakDispatch> = OnceLock::new();

/// The trace and span ids of the innermost traced span around `event`.
fn trace_ids(event: &Event<'_>) -> Option<(String, String)> {
    if !telemetry::enabled() {
        return None;
    }
    let dispatch = DISPATCH.get()?.upgrade()?;
    let id = match event.parent() {
        Some(id) => id.clone(),
        None if event.is_contextual() => dispatch.current_span().id()?.clone(),
        None => return None,
    };
    // The registry sees every span, whatever the log filter let through.
    let registry = dispatch.downcast_ref::<Registry>()?;
    let ids: Vec<_> = registry.span(&id)?.scope().map(|span| span.id()).collect();
    ids.iter().find_map(|id| {
        tracing_opentelemetry::get_otel_context(id, &dispatch)
            .and_then(|context| telemetry::ids(&context))
    })
}

/// One JSON object per event.
struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let metadata = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(timestamp));
        line.insert("level".into(), Value::String(metadata.level().to_string()));
        event.record(&mut Fields(&mut line));
        line.insert("target".into(), Value::String(metadata.target().to_owned()));
        if let Some((trace_id, span_id)) = trace_ids(event) {
            line.insert("trace_id".into(), Value::String(trace_id));
            line.insert("span_id".into(), Value::String(span_id));
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Collects an event's fields as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // Bridged `log` records carry their metadata as `log.*` fields; the line has it already.
        if !field.name().starts_with("log.") {
            self.0
                .insert(field.name().into(), Value::String(format!("{value:?}")));
        }
    }
}
