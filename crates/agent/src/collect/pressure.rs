//! Pressure stall information, from `{proc_root}/pressure/{cpu,io,memory,irq}`, as node_exporter's `pressure`
//! collector reports it: the `total=` of each line, microseconds since boot, in seconds.
//!
//! A kernel without PSI (before 4.20, or built without `CONFIG_PSI`) has no such files, and one booted with `psi=0`
//! refuses to read them: no series, and no error. `irq` exists since Linux 6.1 (with `CONFIG_IRQ_TIME_ACCOUNTING`).

use std::path::Path;

use crate::config::AgentConfig;
use crate::error::Error;
use crate::sample::Samples;

use super::{Skipped, read_optional};

/// Each resource, with the series of its `some` line and of its `full` line. node_exporter reads no `full` for the
/// CPU (always 0 system-wide) and the IRQ file has no `some`.
const RESOURCES: [(&str, Option<&str>, Option<&str>); 4] = [
    ("cpu", Some("node_pressure_cpu_waiting_seconds_total"), None),
    (
        "io",
        Some("node_pressure_io_waiting_seconds_total"),
        Some("node_pressure_io_stalled_seconds_total"),
    ),
    (
        "memory",
        Some("node_pressure_memory_waiting_seconds_total"),
        Some("node_pressure_memory_stalled_seconds_total"),
    ),
    ("irq", None, Some("node_pressure_irq_stalled_seconds_total")),
];

/// Emits `node_pressure_*_seconds_total` (counters) for the resources whose file exists.
pub(crate) fn collect(config: &AgentConfig, out: &mut Samples) -> Result<(), Error> {
    let mut skipped = Skipped::default();
    for (resource, some, full) in RESOURCES {
        let path = config.proc_path(Path::new("pressure").join(resource));
        let text = match read_optional(&path) {
            Ok(Some(text)) => text,
            Ok(None) => {
                tracing::debug!(path = %path.display(), "no pressure information (kernel without PSI)");
                continue;
            }
            Err(Error::Read { source, .. }) if source.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                tracing::debug!("pressure information disabled (psi=0 on the kernel command line)");
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        let (some_total, full_total) = totals(&path, &text, &mut skipped);
        for (name, total, kind) in [(some, some_total, "some"), (full, full_total, "full")] {
            let Some(name) = name else { continue };
            match total {
                Some(microseconds) => out.counter(name, &[], microseconds as f64 / 1e6),
                None => skipped.note(&path, format!("no {kind} line with a total")),
            }
        }
    }
    skipped.finish()
}

/// The `total=` of the `some` and `full` lines of a pressure file (microseconds); a line whose total does not parse
/// is noted in `skipped` and counts as absent, and lines of other kinds are ignored, as the kernel may add some.
pub(crate) fn totals(path: &Path, text: &str, skipped: &mut Skipped) -> (Option<u64>, Option<u64>) {
    let (mut some, mut full) = (None, None);
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let slot = match fields.next() {
            Some("some") => &mut some,
            Some("full") => &mut full,
            _ => continue,
        };
        let total = fields.find_map(|field| field.strip_prefix("total="));
        match total.map(str::parse::<u64>) {
            Some(Ok(total)) => *slot = Some(total),
            _ => skipped.note(path, format!("no total in {line:?}")),
        }
    }
    (some, full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Kind, Sample};

    fn collect_files(files: &[(&str, &str)]) -> (Vec<Sample>, Result<(), Error>) {
        super::super::collect_fake_proc("pressure", files, collect)
    }

    fn named(samples: &[Sample]) -> Vec<(&str, f64)> {
        samples.iter().map(|s| (s.name.as_str(), s.value)).collect()
    }

    const CPU: &str = "some avg10=0.00 avg60=0.00 avg300=0.00 total=8691988127\n\
        full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
    const IO: &str = "some avg10=0.18 avg60=0.11 avg300=0.07 total=1500000\n\
        full avg10=0.10 avg60=0.05 avg300=0.02 total=250000\n";
    const MEMORY: &str = "some avg10=0.00 avg60=0.00 avg300=0.00 total=3000000\n\
        full avg10=0.00 avg60=0.00 avg300=0.00 total=1000000\n";
    const IRQ: &str = "full avg10=0.00 avg60=0.00 avg300=0.00 total=42\n";

    #[test]
    fn totals_in_seconds_as_counters() {
        let (samples, result) =
            collect_files(&[("cpu", CPU), ("io", IO), ("memory", MEMORY), ("irq", IRQ)]);
        result.expect("parses");
        assert_eq!(
            named(&samples),
            [
                ("node_pressure_cpu_waiting_seconds_total", 8691.988127),
                ("node_pressure_io_waiting_seconds_total", 1.5),
                ("node_pressure_io_stalled_seconds_total", 0.25),
                ("node_pressure_memory_waiting_seconds_total", 3.0),
                ("node_pressure_memory_stalled_seconds_total", 1.0),
                ("node_pressure_irq_stalled_seconds_total", 0.000042),
            ]
        );
        assert!(samples.iter().all(|s| s.kind == Kind::Counter));
    }

    #[test]
    fn a_kernel_without_psi_or_without_irq_pressure_is_no_error() {
        let (samples, result) = collect_files(&[]);
        result.expect("absent is fine");
        assert!(samples.is_empty());
        // Before Linux 6.1 (and before 5.13 the cpu file had no full line).
        let (samples, result) = collect_files(&[
            ("cpu", "some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n"),
            ("io", IO),
            ("memory", MEMORY),
        ]);
        result.expect("parses");
        assert_eq!(samples.len(), 5);
        assert!(
            samples
                .iter()
                .all(|s| s.name != "node_pressure_irq_stalled_seconds_total")
        );
    }

    #[test]
    fn a_truncated_or_garbled_file_skips_what_it_cannot_read() {
        let (samples, result) = collect_files(&[
            (
                "cpu",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=5000000\n",
            ),
            // Cut short in the middle of the full line.
            (
                "io",
                "some avg10=0.18 avg60=0.11 avg300=0.07 total=2000000\nfull avg10=0.1",
            ),
            ("memory", "some total=lots\n\u{0}\u{1}garbage\n"),
            ("irq", ""),
        ]);
        let error = result.expect_err("the damage is reported").to_string();
        assert!(error.contains("pressure/io"), "{error}");
        assert_eq!(
            named(&samples),
            [
                ("node_pressure_cpu_waiting_seconds_total", 5.0),
                ("node_pressure_io_waiting_seconds_total", 2.0),
            ]
        );
    }
}
