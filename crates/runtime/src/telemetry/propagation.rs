//! The W3C trace context carried across Kafka and HTTP, and the ids log lines carry.

use std::collections::HashMap;
use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C trace context propagator (`traceparent`, `tracestate`).
fn propagator() -> &'static TraceContextPropagator {
    static PROPAGATOR: OnceLock<TraceContextPropagator> = OnceLock::new();
    PROPAGATOR.get_or_init(TraceContextPropagator::new)
}

/// The `traceparent` and `tracestate` of `span`, to send along (empty when tracing is off).
pub fn inject(span: &tracing::Span) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    if super::enabled() {
        propagator().inject_context(&span.context(), &mut fields);
    }
    fields
}

/// Makes `span` a child of the trace context in `fields` (`traceparent`, `tracestate`), when they hold one.
pub fn set_parent(span: &tracing::Span, fields: &HashMap<String, String>) {
    if !super::enabled() || !fields.contains_key("traceparent") {
        return;
    }
    let parent = propagator().extract(fields);
    if parent.span().span_context().is_valid() {
        // Fails only for a span already started, which callers never pass.
        let _ = span.set_parent(parent);
    }
}

/// The trace id of `span` in hex, when it is being recorded (sampled and exported).
pub fn sampled_trace_id(span: &tracing::Span) -> Option<String> {
    if !super::enabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    (span_context.is_valid() && span_context.is_sampled())
        .then(|| span_context.trace_id().to_string())
}

/// The trace and span ids of `span` in hex, when it has a valid context (what log lines carry).
pub(crate) fn ids(context: &opentelemetry::Context) -> Option<(String, String)> {
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}
