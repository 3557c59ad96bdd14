//! The kernel's entropy pool, from `{proc_root}/sys/kernel/random/{entropy_avail,poolsize}`, as node_exporter's
//! `entropy` collector reports it.

use crate::config::AgentConfig;
use crate::error::Error;
use crate::sample::Samples;

use super::{Skipped, read};

/// The files and their series, gauges both.
const FILES: [(&str, &str); 2] = [
    ("entropy_avail", "node_entropy_available_bits"),
    ("poolsize", "node_entropy_pool_size_bits"),
];

/// Emits `node_entropy_available_bits` and `node_entropy_pool_size_bits`; a file that is missing or does not hold
/// a number is skipped (the other is still reported) and returned as the error.
pub(crate) fn collect(config: &AgentConfig, out: &mut Samples) -> Result<(), Error> {
    let mut skipped = Skipped::default();
    let mut failed = None;
    for (file, name) in FILES {
        let path = config.proc_path("sys/kernel/random").join(file);
        let text = match read(&path) {
            Ok(text) => text,
            Err(error) => {
                failed.get_or_insert(error);
                continue;
            }
        };
        match text.trim().parse::<u64>() {
            Ok(bits) => out.gauge(name, &[], bits as f64),
            Err(_) => skipped.note(&path, format!("{:?} is not a number", text.trim())),
        }
    }
    match failed {
        Some(error) => Err(error),
        None => skipped.finish(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Kind, Sample};

    fn collect_files(files: &[(&str, &str)]) -> (Vec<Sample>, Result<(), Error>) {
        super::super::collect_fake_proc("sys/kernel/random", files, collect)
    }

    fn named(samples: &[Sample]) -> Vec<(&str, f64, Kind)> {
        samples
            .iter()
            .map(|s| (s.name.as_str(), s.value, s.kind))
            .collect()
    }

    #[test]
    fn available_bits_and_pool_size_as_gauges() {
        let (samples, result) = collect_files(&[("entropy_avail", "256\n"), ("poolsize", "256\n")]);
        result.expect("parses");
        assert_eq!(
            named(&samples),
            [
                ("node_entropy_available_bits", 256.0, Kind::Gauge),
                ("node_entropy_pool_size_bits", 256.0, Kind::Gauge),
            ]
        );
    }

    #[test]
    fn a_garbled_or_missing_file_is_skipped_and_reported() {
        let (samples, result) = collect_files(&[("entropy_avail", "3a\n"), ("poolsize", "4096")]);
        assert!(result.is_err());
        assert_eq!(
            named(&samples),
            [("node_entropy_pool_size_bits", 4096.0, Kind::Gauge)]
        );
        let (samples, result) = collect_files(&[("entropy_avail", "")]);
        assert!(result.is_err());
        assert!(samples.is_empty());
    }
}
