//! Packet processing in softirq context, from `{proc_root}/net/softnet_stat`, as node_exporter's `softnet`
//! collector reports it: one line of hexadecimal columns per CPU.

use std::path::Path;

use crate::config::AgentConfig;
use crate::error::Error;
use crate::sample::Samples;

use super::{Skipped, read};

/// The counters: the column each is in and its series. A column the kernel does not write yet (`received_rps`
/// before 2.6.39, `flow_limit_count` before 4.18) reads 0, as node_exporter reports it.
const COUNTERS: [(usize, &str); 6] = [
    (0, "node_softnet_processed_total"),
    (1, "node_softnet_dropped_total"),
    (2, "node_softnet_times_squeezed_total"),
    (8, "node_softnet_cpu_collision_total"),
    (9, "node_softnet_received_rps_total"),
    (10, "node_softnet_flow_limit_count_total"),
];

/// The backlog's length now (column 11, Linux 5.14), a gauge.
const BACKLOG: (usize, &str) = (11, "node_softnet_backlog_len");

/// The CPU a line belongs to (column 12, Linux 5.14); before that, lines are in CPU order.
const CPU_COLUMN: usize = 12;

/// The columns every kernel since 2.6.23 writes.
const MIN_COLUMNS: usize = 9;

/// One CPU's line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CpuStats {
    /// The CPU number (the `cpu` label).
    pub(crate) cpu: u64,
    /// The columns as numbers (hexadecimal in the file).
    pub(crate) columns: Vec<u64>,
}

/// Emits the six `node_softnet_*_total` counters and `node_softnet_backlog_len` for every CPU, labelled `cpu`.
pub(crate) fn collect(config: &AgentConfig, out: &mut Samples) -> Result<(), Error> {
    let path = config.proc_path("net/softnet_stat");
    let text = read(&path)?;
    let mut skipped = Skipped::default();
    for stats in parse(&path, &text, &mut skipped) {
        let cpu = stats.cpu.to_string();
        let labels = [("cpu", cpu.as_str())];
        let column = |index: usize| stats.columns.get(index).copied().unwrap_or(0) as f64;
        for (index, name) in COUNTERS {
            out.counter(name, &labels, column(index));
        }
        out.gauge(BACKLOG.1, &labels, column(BACKLOG.0));
    }
    skipped.finish()
}

/// The lines of `softnet_stat`; a line with fewer than [`MIN_COLUMNS`] columns or one that is not hexadecimal is
/// noted in `skipped` and left out.
pub(crate) fn parse(path: &Path, text: &str, skipped: &mut Skipped) -> Vec<CpuStats> {
    let mut cpus = Vec::new();
    for (line_number, line) in text.lines().enumerate() {
        let columns: Result<Vec<u64>, _> = line
            .split_whitespace()
            .map(|column| u64::from_str_radix(column, 16))
            .collect();
        let Ok(columns) = columns else {
            skipped.note(path, format!("line {}: not hexadecimal", line_number + 1));
            continue;
        };
        if columns.len() < MIN_COLUMNS {
            skipped.note(
                path,
                format!(
                    "line {}: {} columns, expected at least {MIN_COLUMNS}",
                    line_number + 1,
                    columns.len()
                ),
            );
            continue;
        }
        let cpu = columns
            .get(CPU_COLUMN)
            .copied()
            .unwrap_or(line_number as u64);
        cpus.push(CpuStats { cpu, columns });
    }
    cpus
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Kind, Sample};

    /// Linux 6.x: 13 columns and more; CPU 2 is offline, so the second line is CPU 3.
    const RECENT: &str = "\
0013d327 00000000 00000003 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
0013187b 00000002 00000006 00000000 00000000 00000000 00000000 00000000 00000001 0000000a 00000004 00000005 00000003 00000000 00000000
";

    fn collect_text(text: &str) -> (Vec<Sample>, Result<(), Error>) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("net")).expect("mkdir");
        std::fs::write(dir.path().join("net/softnet_stat"), text).expect("write");
        let config = AgentConfig {
            proc_root: dir.path().to_path_buf(),
            ..AgentConfig::default()
        };
        let mut out = Samples::new("h");
        let result = collect(&config, &mut out);
        (out.into_vec(), result)
    }

    fn get(samples: &[Sample], name: &str, cpu: &str) -> Option<(f64, Kind)> {
        samples
            .iter()
            .find(|s| s.name == name && s.label("cpu") == Some(cpu))
            .map(|s| (s.value, s.kind))
    }

    #[test]
    fn seven_series_per_cpu_labelled_by_the_kernels_cpu_number() {
        let (samples, result) = collect_text(RECENT);
        result.expect("parses");
        assert_eq!(samples.len(), 14);
        let counter = |value: f64| Some((value, Kind::Counter));
        assert_eq!(
            get(&samples, "node_softnet_processed_total", "0"),
            counter(1_299_239.0)
        );
        assert_eq!(
            get(&samples, "node_softnet_processed_total", "3"),
            counter(1_251_451.0)
        );
        assert_eq!(
            get(&samples, "node_softnet_dropped_total", "3"),
            counter(2.0)
        );
        assert_eq!(
            get(&samples, "node_softnet_times_squeezed_total", "3"),
            counter(6.0)
        );
        assert_eq!(
            get(&samples, "node_softnet_cpu_collision_total", "3"),
            counter(1.0)
        );
        assert_eq!(
            get(&samples, "node_softnet_received_rps_total", "3"),
            counter(10.0)
        );
        assert_eq!(
            get(&samples, "node_softnet_flow_limit_count_total", "3"),
            counter(4.0)
        );
        assert_eq!(
            get(&samples, "node_softnet_backlog_len", "3"),
            Some((5.0, Kind::Gauge))
        );
        assert_eq!(get(&samples, "node_softnet_processed_total", "1"), None);
    }

    #[test]
    fn an_old_kernel_numbers_cpus_by_line_and_lacks_the_newer_columns() {
        let old = "00000010 00000001 00000002 00000000 00000000 00000000 00000000 00000000 00000000 00000007\n\
                   00000020 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n";
        let (samples, result) = collect_text(old);
        result.expect("parses");
        assert_eq!(samples.len(), 14);
        assert_eq!(
            get(&samples, "node_softnet_processed_total", "1"),
            Some((32.0, Kind::Counter))
        );
        assert_eq!(
            get(&samples, "node_softnet_received_rps_total", "0"),
            Some((7.0, Kind::Counter))
        );
        assert_eq!(
            get(&samples, "node_softnet_flow_limit_count_total", "0"),
            Some((0.0, Kind::Counter))
        );
    }

    #[test]
    fn a_truncated_or_garbled_line_is_skipped_and_reported() {
        let first = RECENT.lines().next().unwrap_or_default();
        let text = format!("{first}\n0013187b 00000002 000000\nzz 1 2 3 4 5 6 7 8 9\n");
        let (samples, result) = collect_text(&text);
        let error = result.expect_err("reported").to_string();
        assert!(
            error.contains("line 2") && error.contains("and 1 more"),
            "{error}"
        );
        // The whole first line survives; the cut one and the garbled one do not.
        assert_eq!(samples.len(), 7);
        assert_eq!(
            get(&samples, "node_softnet_processed_total", "0"),
            Some((1_299_239.0, Kind::Counter))
        );
        let (samples, result) = collect_text("");
        result.expect("an empty file has no CPU lines");
        assert!(samples.is_empty());
    }
}
