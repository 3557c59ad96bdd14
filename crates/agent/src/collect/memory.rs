//! Memory and swap, from `{proc_root}/meminfo`.
//!
//! Parsed here rather than with `procfs::Meminfo`, which refuses a file that lacks fields the agent does not use
//! (virtualised `meminfo` files in sandboxed containers often do).

use std::collections::HashMap;
use std::path::Path;

use crate::config::AgentConfig;
use crate::error::Error;
use crate::sample::Samples;

use super::{number, read};

/// The `meminfo` fields exported as `node_memory_{field}_bytes`.
const FIELDS: [&str; 7] = [
    "MemTotal",
    "MemFree",
    "MemAvailable",
    "Buffers",
    "Cached",
    "SwapTotal",
    "SwapFree",
];

/// Parses `meminfo` text into bytes per field (`kB` is 1024 bytes; a field without unit is kept as is).
pub(crate) fn parse(path: &Path, text: &str) -> Result<HashMap<String, u64>, Error> {
    let mut fields = HashMap::new();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let Some(value) = parts.next() else { continue };
        let value: u64 = number(path, key, value)?;
        let bytes = match parts.next() {
            None => value,
            Some("kB") => value.saturating_mul(1024),
            Some(unit) => {
                return Err(Error::parse(path, format!("{key}: unknown unit {unit:?}")));
            }
        };
        fields.insert(key.trim().to_owned(), bytes);
    }
    Ok(fields)
}

/// Emits `node_memory_*_bytes` and the derived `gomon_memory_used_bytes`, `gomon_memory_used_percent` and
/// `gomon_swap_used_bytes`.
pub(crate) fn collect(config: &AgentConfig, out: &mut Samples) -> Result<(), Error> {
    let path = config.proc_path("meminfo");
    let fields = parse(&path, &read(&path)?)?;
    let total = *fields
        .get("MemTotal")
        .ok_or_else(|| Error::parse(&path, "no MemTotal"))?;
    for field in FIELDS {
        if let Some(value) = fields.get(field) {
            out.gauge(&format!("node_memory_{field}_bytes"), &[], *value as f64);
        }
    }
    // MemAvailable exists since Linux 3.14; without it there is no honest "used".
    if let Some(available) = fields.get("MemAvailable") {
        let used = total.saturating_sub(*available);
        out.gauge("gomon_memory_used_bytes", &[], used as f64);
        if total > 0 {
            out.gauge(
                "gomon_memory_used_percent",
                &[],
                used as f64 / total as f64 * 100.0,
            );
        }
    }
    if let (Some(swap_total), Some(swap_free)) = (fields.get("SwapTotal"), fields.get("SwapFree")) {
        out.gauge(
            "gomon_swap_used_bytes",
            &[],
            swap_total.saturating_sub(*swap_free) as f64,
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
        assert_eq!(fields["MemTotal"], 1_024_000);
        assert_eq!(fields["HugePages_Total"], 3);
        assert_eq!(fields["Active(anon)"], 2048);
    }

    #[test]
    fn bad_values_are_parse_errors() {
        assert!(parse(Path::new("meminfo"), "MemTotal: lots kB\n").is_err());
        assert!(parse(Path::new("meminfo"), "MemTotal: 1 parsecs\n").is_err());
    }
}
