//! The Prometheus registry a role registers its metrics in, with process metrics, rendered in the text format.

use prometheus::{Encoder, Registry, TextEncoder};

/// A registry with the standard `process_*` metrics already registered.
pub fn registry() -> Registry {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    {
        let process = prometheus::process_collector::ProcessCollector::for_self();
        // Registering a fresh collector in a fresh registry cannot collide.
        if let Err(error) = registry.register(Box::new(process)) {
            tracing::warn!(%error, "process metrics unavailable");
        }
    }
    registry
}

/// Content type of [`render`]'s output.
/// Appends `value` to `out` escaped as a label value of the text format (backslash, double quote, newline).
pub fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every metric of `registry` in the Prometheus text exposition format.
pub fn render(registry: &Registry) -> String {
    let mut buffer = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        tracing::error!(%error, "encoding metrics failed");
    }
    String::from_utf8(buffer).unwrap_or_default()
}

/// Unwraps the result of creating or registering a metric whose name and labels are fixed in code.
///
/// Such a call fails only on a programming error (a duplicate or malformed name), caught by the first test run.
pub fn must<T>(result: prometheus::Result<T>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("invalid metric definition: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_renders_process_metrics() {
        let text = render(&registry());
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
        assert!(text.contains("process_cpu_seconds_total"), "{text}");
    }
}
