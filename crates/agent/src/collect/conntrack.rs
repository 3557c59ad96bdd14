//! Connection tracking, from `{proc_root}/sys/net/netfilter/nf_conntrack_{count,max}` and
//! `{proc_root}/net/stat/nf_conntrack`, as node_exporter's `conntrack` collector reports it.
//!
//! Without the `nf_conntrack` module the files do not exist: no series, and no error.

use std::path::Path;

use crate::config::AgentConfig;
use crate::error::Error;
use crate::sample::Samples;

use super::{number, read_optional};

/// The columns of `net/stat/nf_conntrack` summed over the CPUs, with their series; gauges, as node_exporter types
/// them. Columns are found by their header name: kernels renamed and added others over time.
const STATISTICS: [(&str, &str); 8] = [
    ("found", "node_nf_conntrack_stat_found"),
    ("invalid", "node_nf_conntrack_stat_invalid"),
    ("ignore", "node_nf_conntrack_stat_ignore"),
    ("insert", "node_nf_conntrack_stat_insert"),
    ("insert_failed", "node_nf_conntrack_stat_insert_failed"),
    ("drop", "node_nf_conntrack_stat_drop"),
    ("early_drop", "node_nf_conntrack_stat_early_drop"),
    ("search_restart", "node_nf_conntrack_stat_search_restart"),
];

/// Emits `node_nf_conntrack_entries`, `node_nf_conntrack_entries_limit` and, where the kernel has the statistics
/// file, `node_nf_conntrack_stat_*`.
pub(crate) fn collect(config: &AgentConfig, out: &mut Samples) -> Result<(), Error> {
    let count = config.proc_path("sys/net/netfilter/nf_conntrack_count");
    let Some(entries) = read_optional(&count)? else {
        tracing::debug!(path = %count.display(), "no connection tracking (module not loaded)");
        return Ok(());
    };
    let entries: u64 = number(&count, "entries", entries.trim())?;
    let max = config.proc_path("sys/net/netfilter/nf_conntrack_max");
    let limit = read_optional(&max)?
        .map(|text| number::<u64>(&max, "limit", text.trim()))
        .transpose()?;
    out.gauge("node_nf_conntrack_entries", &[], entries as f64);
    if let Some(limit) = limit {
        out.gauge("node_nf_conntrack_entries_limit", &[], limit as f64);
    }
    let stat = config.proc_path("net/stat/nf_conntrack");
    if let Some(text) = read_optional(&stat)? {
        for (name, value) in statistics(&stat, &text)? {
            out.gauge(name, &[], value as f64);
        }
    }
    Ok(())
}

/// The [`STATISTICS`] present in the header of `text`, each summed over the per-CPU lines (hexadecimal).
pub(crate) fn statistics(path: &Path, text: &str) -> Result<Vec<(&'static str, u64)>, Error> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| Error::parse(path, "empty"))?
        .split_whitespace()
        .collect();
    let columns: Vec<(usize, &'static str)> = STATISTICS
        .iter()
        .filter_map(|(column, name)| {
            header
                .iter()
                .position(|field| field == column)
                .map(|index| (index, *name))
        })
        .collect();
    let mut sums = vec![0u64; columns.len()];
    for line in lines.filter(|line| !line.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        for ((index, name), sum) in columns.iter().zip(sums.iter_mut()) {
            let field = fields
                .get(*index)
                .ok_or_else(|| Error::parse(path, format!("a line without {name}")))?;
            let value = u64::from_str_radix(field, 16)
                .map_err(|_| Error::parse(path, format!("{field:?} is not hexadecimal")))?;
            *sum = sum.saturating_add(value);
        }
    }
    Ok(columns
        .into_iter()
        .map(|(_, name)| name)
        .zip(sums)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n\
        00000021  00000000 00000001 00000000 0000000a 00000002 00000000 00000000 00000000 00000000 00000003 00000000 00000000  00000000 00000000 00000000 00000010\n\
        00000021  00000000 00000002 00000000 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000001\n";

    #[test]
    fn statistics_are_summed_over_cpus_by_column_name() {
        let sums = statistics(Path::new("nf_conntrack"), STAT).expect("parses");
        let get = |name: &str| sums.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        assert_eq!(get("node_nf_conntrack_stat_found"), Some(3));
        assert_eq!(get("node_nf_conntrack_stat_invalid"), Some(11));
        assert_eq!(get("node_nf_conntrack_stat_drop"), Some(3));
        assert_eq!(get("node_nf_conntrack_stat_search_restart"), Some(17));
        assert_eq!(sums.len(), 8);
        // An older kernel's header without search_restart: the others still count.
        let old = "entries searched found\n00000001 00000002 00000003\n";
        let sums = statistics(Path::new("nf_conntrack"), old).expect("parses");
        assert_eq!(sums, [("node_nf_conntrack_stat_found", 3)]);
    }

    #[test]
    fn garbled_statistics_are_errors() {
        assert!(statistics(Path::new("s"), "").is_err());
        assert!(statistics(Path::new("s"), "found\nxyz\n").is_err());
        assert!(statistics(Path::new("s"), "entries found\n00000001\n").is_err());
    }

    #[test]
    fn no_module_no_series_and_no_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = AgentConfig {
            proc_root: dir.path().to_path_buf(),
            ..AgentConfig::default()
        };
        let mut out = Samples::new("h");
        collect(&config, &mut out).expect("absent is fine");
        assert!(out.into_vec().is_empty());
    }
}
