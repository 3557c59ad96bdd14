//! Block device I/O, from `{proc_root}/diskstats`.

use procfs::{DiskStats, FromRead};

use crate::config::AgentConfig;
use crate::error::Error;
use crate::sample::Samples;

use super::read;

/// `/proc/diskstats` counts sectors of 512 bytes whatever the device's sector size.
const SECTOR_BYTES: f64 = 512.0;

/// Device name prefixes skipped when followed only by digits: RAM disks, compressed RAM and loop devices.
const EXCLUDED_PREFIXES: [&str; 3] = ["ram", "zram", "loop"];

/// Whether `device` is a RAM or loop device (`ram0`, `zram1`, `loop12`).
pub(crate) fn excluded(device: &str) -> bool {
    EXCLUDED_PREFIXES.iter().any(|prefix| {
        device
            .strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Emits `node_disk_*` counters per device, partitions included.
pub(crate) fn collect(config: &AgentConfig, out: &mut Samples) -> Result<(), Error> {
    let path = config.proc_path("diskstats");
    let text = read(&path)?;
    let DiskStats(disks) = DiskStats::from_read(text.as_bytes())
        .map_err(|error| Error::parse(&path, error.to_string()))?;
    for disk in disks.iter().filter(|disk| !excluded(&disk.name)) {
        let labels = [("device", disk.name.as_str())];
        out.counter(
            "node_disk_read_bytes_total",
            &labels,
            disk.sectors_read as f64 * SECTOR_BYTES,
        );
        out.counter(
            "node_disk_written_bytes_total",
            &labels,
            disk.sectors_written as f64 * SECTOR_BYTES,
        );
        out.counter(
            "node_disk_reads_completed_total",
            &labels,
            disk.reads as f64,
        );
        out.counter(
            "node_disk_writes_completed_total",
            &labels,
            disk.writes as f64,
        );
        out.counter(
            "node_disk_io_time_seconds_total",
            &labels,
            disk.time_in_progress as f64 / 1000.0,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_and_loop_devices_are_excluded_partitions_are_not() {
        for device in ["ram0", "zram1", "loop12"] {
            assert!(excluded(device), "{device}");
        }
        for device in ["sda", "sda1", "nvme0n1p2", "vda", "loop", "ramdisk", "dm-0"] {
            assert!(!excluded(device), "{device}");
        }
    }
}
