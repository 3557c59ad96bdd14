//! Memory and swap, from `{proc_root}/meminfo`: every field, as node_exporter's `meminfo` collector names it.
//!
//! Parsed here rather than with `procfs::Meminfo`, which refuses a file that lacks fields the agent does not use
//! (virtualised `meminfo` files in sandboxed containers often do).

use std::path::Path;

use gomon_runtime::selector::valid_metric_name;

use crate::config::AgentConfig;
use crate::error::Error;
use crate::sample::Samples;

use super::{number, read};

/// One line of `meminfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    /// The key as written (`Active(anon)`).
    pub(crate) key: String,
    /// The value, in bytes when the line has the `kB` unit (× 1024), else as written (`HugePages_Total: 3`).
    pub(crate) value: u64,
    /// Whether the line has a unit, so the value is bytes.
    pub(crate) bytes: bool,
}

impl Field {
    /// node_exporter's series name: `node_memory_` and the key, parentheses made an underscore suffix
    /// (`Active(anon)` is `Active_anon`), then `_bytes` for a value in bytes.
    pub(crate) fn metric_name(&self) -> String {
        let key = match self.key.split_once('(') {
            Some((head, tail)) => format!("{head}_{}", tail.trim_end_matches(')')),
            None => self.key.clone(),
        };
        if self.bytes {
            format!("node_memory_{key}_bytes")
        } else {
            format!("node_memory_{key}")
        }
    }
}

/// Parses `meminfo` text (`kB` is 1024 bytes; a field without unit is kept as is).
pub(crate) fn parse(path: &Path, text: &str) -> Result<Vec<Field>, Error> {
    let mut fields = Vec::new();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let Some(value) = parts.next() else { continue };
        let value: u64 = number(path, key, value)?;
        let (value, bytes) = match parts.next() {
            None => (value, false),
            Some("kB") => (value.saturating_mul(1024), true),
            Some(unit) => {
                return Err(Error::parse(path, format!("{key}: unknown unit {unit:?}")));
            }
        };
        fields.push(Field {
            key: key.trim().to_owned(),
            value,
            bytes,
        });
    }
    Ok(fields)
}

/// Emits `node_memory_*` for every field (a counter when the name ends in `_total`, as node_exporter types it) and
/// the derived `gomon_memory_used_bytes`, `gomon_memory_used_percent` and `gomon_swap_used_bytes`.
pub(crate) fn collect(config: &AgentConfig, out: &mut Samples) -> Result<(), Error> {
    let path = config.proc_path("meminfo");
    let fields = parse(&path, &read(&path)?)?;
    let get = |key: &str| {
        fields
            .iter()
            .find(|field| field.key == key)
            .map(|field| field.value)
    };
    let total = get("MemTotal").ok_or_else(|| Error::parse(&path, "no MemTotal"))?;
    for field in &fields {
        let name = field.metric_name();
        if !valid_metric_name(&name) {
            tracing::debug!(key = %field.key, "meminfo field without a valid series name");
            continue;
        }
        if name.ends_with("_total") {
            out.counter(&name, &[], field.value as f64);
        } else {
            out.gauge(&name, &[], field.value as f64);
        }
    }
    // MemAvailable exists since Linux 3.14; without it there is no honest "used".
    if let Some(available) = get("MemAvailable") {
        let used = total.saturating_sub(available);
        out.gauge("gomon_memory_used_bytes", &[], used as f64);
        if total > 0 {
            out.gauge(
                "gomon_memory_used_percent",
                &[],
                used as f64 / total as f64 * 100.0,
            );
        }
    }
    if let (Some(swap_total), Some(swap_free)) = (get("SwapTotal"), get("SwapFree")) {
        out.gauge(
            "gomon_swap_used_bytes",
            &[],
            swap_total.saturating_sub(swap_free) as f64,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_kilobytes_and_keeps_unitless_values() {
        let fields = parse(
            Path::new("meminfo"),
            "MemTotal:  1000 kB\nHugePages_Total:    3\nActive(anon):  2 kB\n",
        )
        .expect("parses");
        let named: Vec<(String, u64)> = fields
            .iter()
            .map(|field| (field.metric_name(), field.value))
            .collect();
        assert_eq!(
            named,
            [
                ("node_memory_MemTotal_bytes".to_owned(), 1_024_000),
                ("node_memory_HugePages_Total".to_owned(), 3),
                ("node_memory_Active_anon_bytes".to_owned(), 2048),
            ]
        );
    }

    #[test]
    fn bad_values_are_parse_errors() {
        assert!(parse(Path::new("meminfo"), "MemTotal: lots kB\n").is_err());
        assert!(parse(Path::new("meminfo"), "MemTotal: 1 parsecs\n").is_err());
    }
}
