//! The Prometheus registry a role registers its metrics in, with process metrics, rendered in the text format.

use std::fmt::Write as _;

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

/// The type of a metric family in the text format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FamilyType {
    /// A total that only goes up (until its source restarts).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Unknown.
    Untyped,
}

impl FamilyType {
    /// The word of `# TYPE`.
    pub fn as_str(self) -> &'static str {
        match self {
            FamilyType::Counter => "counter",
            FamilyType::Gauge => "gauge",
            FamilyType::Untyped => "untyped",
        }
    }
}

/// Writes samples in the Prometheus text exposition format (version 0.0.4): a family's `# HELP` and `# TYPE`
/// lines, then its samples, each with its labels, its value (`NaN`, `+Inf`, `-Inf` as the format spells them) and
/// an optional timestamp. The samples of one family must be written one after another.
#[derive(Debug, Default)]
pub struct TextWriter {
    text: String,
}

impl TextWriter {
    /// Starts the family `name`.
    pub fn family(&mut self, name: &str, kind: FamilyType, help: Option<&str>) {
        if let Some(help) = help {
            let _ = write!(self.text, "# HELP {name} ");
            for c in help.chars() {
                match c {
                    '\\' => self.text.push_str("\\\\"),
                    '\n' => self.text.push_str("\\n"),
                    c => self.text.push(c),
                }
            }
            self.text.push('\n');
        }
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.as_str());
    }

    /// Writes one sample of the current family.
    pub fn sample<'a>(
        &mut self,
        name: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        value: f64,
        timestamp_ms: Option<i64>,
    ) {
        self.text.push_str(name);
        let mut first = true;
        for (label, value) in labels {
            self.text.push(if first { '{' } else { ',' });
            first = false;
            self.text.push_str(label);
            self.text.push_str("=\"");
            escape_label_value(value, &mut self.text);
            self.text.push('"');
        }
        if !first {
            self.text.push('}');
        }
        let _ = match value {
            v if v.is_nan() => write!(self.text, " NaN"),
            v if v == f64::INFINITY => write!(self.text, " +Inf"),
            v if v == f64::NEG_INFINITY => write!(self.text, " -Inf"),
            v => write!(self.text, " {v}"),
        };
        if let Some(timestamp_ms) = timestamp_ms {
            let _ = write!(self.text, " {timestamp_ms}");
        }
        self.text.push('\n');
    }

    /// The text written.
    pub fn finish(self) -> String {
        self.text
    }
}

/// Content type of [`render`]'s and [`TextWriter`]'s output.
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

    #[test]
    fn text_writer_writes_the_exposition_format() {
        let mut writer = TextWriter::default();
        writer.family("node_load1", FamilyType::Gauge, Some("Load\\1\nminute."));
        writer.sample(
            "node_load1",
            [("host", "a\"b\\c\nd")],
            0.5,
            Some(1_700_000_000_000),
        );
        writer.family("node_x_total", FamilyType::Counter, None);
        writer.sample("node_x_total", [], f64::NAN, None);
        writer.sample(
            "node_x_total",
            [("a", "1"), ("b", "2")],
            f64::INFINITY,
            None,
        );
        writer.sample("node_x_total", [("a", "2")], f64::NEG_INFINITY, None);
        assert_eq!(
            writer.finish(),
            "# HELP node_load1 Load\\\\1\\nminute.\n\
             # TYPE node_load1 gauge\n\
             node_load1{host=\"a\\\"b\\\\c\\nd\"} 0.5 1700000000000\n\
             # TYPE node_x_total counter\n\
             node_x_total NaN\n\
             node_x_total{a=\"1\",b=\"2\"} +Inf\n\
             node_x_total{a=\"2\"} -Inf\n"
        );
    }
}
