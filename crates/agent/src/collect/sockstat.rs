//! Sockets by protocol, from `{proc_root}/net/sockstat` and `{proc_root}/net/sockstat6`, as node_exporter's
//! `sockstat` collector names them: `node_sockstat_<PROTOCOL>_<field>`, the protocol as the kernel writes it.
//!
//! Either file is absent when its IP version is disabled: its series are, and that is no error.

use std::path::Path;

use gomon_runtime::selector::valid_metric_name;

use crate::config::AgentConfig;
use crate::error::Error;
use crate::sample::Samples;

use super::{Skipped, read_optional};

/// The fields node_exporter exports from a protocol's line (`inuse` always, 0 when absent, the others when
/// present). `mem` is in pages; it is also exported in bytes as `mem_bytes`.
const FIELDS: [&str; 6] = ["inuse", "orphan", "tw", "alloc", "mem", "memory"];

/// Emits `node_sockstat_sockets_used` (IPv4 only) and `node_sockstat_<PROTOCOL>_<field>` for every protocol of
/// both files, all gauges.
pub(crate) fn collect(config: &AgentConfig, out: &mut Samples) -> Result<(), Error> {
    let page_size = rustix::param::page_size() as u64;
    let mut skipped = Skipped::default();
    for (file, ipv6) in [("net/sockstat", false), ("net/sockstat6", true)] {
        let path = config.proc_path(file);
        let Some(text) = read_optional(&path)? else {
            tracing::debug!(path = %path.display(), "no socket statistics (IP version disabled)");
            continue;
        };
        for (protocol, pairs) in parse(&path, &text, &mut skipped) {
            let get = |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
            if protocol == "sockets" {
                // sockstat6 has no such line; node_exporter would not export one if it had.
                if let (false, Some(used)) = (ipv6, get("used")) {
                    out.gauge("node_sockstat_sockets_used", &[], used as f64);
                }
                continue;
            }
            let mem_bytes = get("mem").map(|pages| pages.saturating_mul(page_size));
            let values = FIELDS
                .iter()
                .map(|field| (*field, get(field)))
                .chain([("mem_bytes", mem_bytes)]);
            for (field, value) in values {
                let value = if field == "inuse" {
                    value.or(Some(0))
                } else {
                    value
                };
                let Some(value) = value else { continue };
                let name = format!("node_sockstat_{protocol}_{field}");
                if valid_metric_name(&name) {
                    out.gauge(&name, &[], value as f64);
                } else {
                    skipped.note(&path, format!("protocol {protocol:?} makes no series name"));
                    break;
                }
            }
        }
    }
    skipped.finish()
}

/// The lines of a sockstat file: the protocol (colon removed) and its key/value pairs. A line without a pair, with
/// an odd number of fields or a value that is not a number is noted in `skipped` and left out.
pub(crate) fn parse<'a>(
    path: &Path,
    text: &'a str,
    skipped: &mut Skipped,
) -> Vec<(&'a str, Vec<(&'a str, u64)>)> {
    let mut lines = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some((protocol, rest)) = fields.split_first() else {
            continue;
        };
        let protocol = protocol.trim_end_matches(':');
        if rest.is_empty() || rest.len() % 2 != 0 {
            skipped.note(path, format!("{protocol}: not key/value pairs"));
            continue;
        }
        let pairs: Option<Vec<(&str, u64)>> = rest
            .chunks_exact(2)
            .map(|pair| pair[1].parse().ok().map(|value| (pair[0], value)))
            .collect();
        match pairs {
            Some(pairs) => lines.push((protocol, pairs)),
            None => skipped.note(path, format!("{protocol}: a value is not a number")),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Kind, Sample};

    const SOCKSTAT: &str = "sockets: used 229\n\
        TCP: inuse 4 orphan 0 tw 4 alloc 17 mem 1\n\
        UDP: inuse 0 mem 2\n\
        UDPLITE: inuse 0\n\
        RAW: inuse 0\n\
        FRAG: inuse 0 memory 0\n";
    const SOCKSTAT6: &str = "TCP6: inuse 17\nUDP6: inuse 9\nUDPLITE6: inuse 0\nRAW6: inuse 1\nFRAG6: inuse 0 memory 0\n";

    fn collect_files(files: &[(&str, &str)]) -> (Vec<Sample>, Result<(), Error>) {
        super::super::collect_fake_proc("net", files, collect)
    }

    fn named(samples: &[Sample]) -> Vec<(&str, f64)> {
        samples.iter().map(|s| (s.name.as_str(), s.value)).collect()
    }

    #[test]
    fn node_exporters_names_with_mem_also_in_bytes() {
        let page = rustix::param::page_size() as f64;
        let (samples, result) = collect_files(&[("sockstat", SOCKSTAT), ("sockstat6", SOCKSTAT6)]);
        result.expect("parses");
        assert!(samples.iter().all(|s| s.kind == Kind::Gauge));
        assert_eq!(
            named(&samples),
            [
                ("node_sockstat_sockets_used", 229.0),
                ("node_sockstat_TCP_inuse", 4.0),
                ("node_sockstat_TCP_orphan", 0.0),
                ("node_sockstat_TCP_tw", 4.0),
                ("node_sockstat_TCP_alloc", 17.0),
                ("node_sockstat_TCP_mem", 1.0),
                ("node_sockstat_TCP_mem_bytes", page),
                ("node_sockstat_UDP_inuse", 0.0),
                ("node_sockstat_UDP_mem", 2.0),
                ("node_sockstat_UDP_mem_bytes", 2.0 * page),
                ("node_sockstat_UDPLITE_inuse", 0.0),
                ("node_sockstat_RAW_inuse", 0.0),
                ("node_sockstat_FRAG_inuse", 0.0),
                ("node_sockstat_FRAG_memory", 0.0),
                ("node_sockstat_TCP6_inuse", 17.0),
                ("node_sockstat_UDP6_inuse", 9.0),
                ("node_sockstat_UDPLITE6_inuse", 0.0),
                ("node_sockstat_RAW6_inuse", 1.0),
                ("node_sockstat_FRAG6_inuse", 0.0),
                ("node_sockstat_FRAG6_memory", 0.0),
            ]
        );
    }

    #[test]
    fn ipv6_disabled_or_both_absent_is_no_error() {
        let (samples, result) = collect_files(&[("sockstat", SOCKSTAT)]);
        result.expect("parses");
        assert_eq!(samples.len(), 14);
        let (samples, result) = collect_files(&[]);
        result.expect("absent is fine");
        assert!(samples.is_empty());
    }

    #[test]
    fn a_truncated_or_garbled_line_is_skipped_and_reported() {
        let text = "sockets: used 12\nTCP: inuse 4 orphan x\nUDP: inuse 3 mem\nRAW:\nbad-proto: inuse 1\nFRAG: inuse 2";
        let (samples, result) = collect_files(&[("sockstat", text)]);
        let error = result.expect_err("reported").to_string();
        assert!(error.contains("net/sockstat"), "{error}");
        assert!(error.contains("and 3 more"), "{error}");
        assert_eq!(
            named(&samples),
            [
                ("node_sockstat_sockets_used", 12.0),
                ("node_sockstat_FRAG_inuse", 2.0),
            ]
        );
    }
}
