//! Network interface traffic, from `{proc_root}/net/dev`, and link state, from `{sys_root}/class/net`.
//!
//! `net/dev` is parsed here by splitting each line at its colon, which also handles the old format where a long
//! byte count runs into the interface name (`eth0:123456789`).

use std::path::Path;

use crate::config::AgentConfig;
use crate::error::Error;
use crate::sample::Samples;

use super::{number, read};

/// The counters exported per direction, in `net/dev` column order.
const COUNTERS: [&str; 4] = ["bytes", "packets", "errs", "drop"];

/// Column of the first transmit counter in `net/dev`.
const TRANSMIT_COLUMN: usize = 8;

/// One interface's line of `net/dev`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Device {
    /// Interface name.
    pub(crate) name: String,
    /// Received bytes, packets, errors and drops.
    pub(crate) receive: [u64; 4],
    /// Transmitted bytes, packets, errors and drops.
    pub(crate) transmit: [u64; 4],
}

/// Parses `net/dev` text; header lines (without a colon) are skipped.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Vec<Device>, Error> {
    let mut devices = Vec::new();
    for line in text.lines() {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let columns: Vec<&str> = counters.split_whitespace().collect();
        if columns.len() < TRANSMIT_COLUMN + COUNTERS.len() {
            return Err(Error::parse(
                path,
                format!("{name}: {} columns, expected 16", columns.len()),
            ));
        }
        let mut device = Device {
            name: name.to_owned(),
            receive: [0; 4],
            transmit: [0; 4],
        };
        for i in 0..COUNTERS.len() {
            device.receive[i] = number(path, name, columns[i])?;
            device.transmit[i] = number(path, name, columns[TRANSMIT_COLUMN + i])?;
        }
        devices.push(device);
    }
    Ok(devices)
}

/// Whether `device` matches one of `patterns`: an exact name, or a prefix when the pattern ends in `*`.
pub(crate) fn excluded(patterns: &[String], device: &str) -> bool {
    patterns
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => device.starts_with(prefix),
            None => pattern == device,
        })
}

/// Emits `node_network_{receive,transmit}_{bytes,packets,errs,drop}_total{device}` and, where sysfs tells,
/// `node_network_up{device}`, for every interface not excluded.
pub(crate) fn collect(config: &AgentConfig, out: &mut Samples) -> Result<(), Error> {
    let path = config.proc_path("net/dev");
    let devices = parse(&path, &read(&path)?)?;
    for device in devices
        .iter()
        .filter(|d| !excluded(&config.network_exclude_devices, &d.name))
    {
        let labels = [("device", device.name.as_str())];
        for (direction, values) in [("receive", &device.receive), ("transmit", &device.transmit)] {
            for (counter, value) in COUNTERS.iter().zip(values) {
                out.counter(
                    &format!("node_network_{direction}_{counter}_total"),
                    &labels,
                    *value as f64,
                );
            }
        }
        // Interface names cannot contain `/`, so the name is safe as a path component.
        let operstate = config.sys_path(format!("class/net/{}/operstate", device.name));
        match std::fs::read_to_string(&operstate) {
            Ok(state) => {
                let up = if state.trim() == "up" { 1.0 } else { 0.0 };
                out.gauge("node_network_up", &labels, up);
            }
            // The interface may have gone since net/dev was read, or sysfs is not mounted: no series, no error.
            Err(error) => {
                tracing::debug!(path = %operstate.display(), %error, "no link state");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_formats_and_skips_headers() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
                    face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                    lo: 100 2 0 0 0 0 0 0 100 2 0 0 0 0 0 0\n  \
                    eth0:123456789 10 1 2 0 0 0 0 555 5 3 4 0 0 0 0\n";
        let devices = parse(Path::new("net/dev"), text).expect("parses");
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[1].name, "eth0");
        assert_eq!(devices[1].receive, [123_456_789, 10, 1, 2]);
        assert_eq!(devices[1].transmit, [555, 5, 3, 4]);
    }

    #[test]
    fn short_lines_are_parse_errors() {
        assert!(parse(Path::new("net/dev"), "eth0: 1 2 3\n").is_err());
    }

    #[test]
    fn exclusion_by_name_or_prefix() {
        let patterns = vec!["lo".to_owned(), "veth*".to_owned()];
        assert!(excluded(&patterns, "lo"));
        assert!(excluded(&patterns, "veth12ab"));
        assert!(!excluded(&patterns, "eth0"));
        assert!(!excluded(&patterns, "lo0"));
    }
}
