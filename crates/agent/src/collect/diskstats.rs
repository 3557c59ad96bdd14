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

/// `/proc/diskstats` counts time in milliseconds.
const SECONDS_PER_MILLISECOND: f64 = 0.001;

/// Emits node_exporter's `node_disk_*` series of `/proc/diskstats` per device, partitions included: counters, and
/// the gauge `node_disk_io_now`. The discard fields (Linux 4.18) and flush fields (5.5) only where the kernel has them.
pub(crate) fn collect(config: &AgentConfig, out: &mut Samples) -> Result<(), Error> {
    let path = config.proc_path("diskstats");
    let text = read(&path)?;
    let DiskStats(disks) = DiskStats::from_read(text.as_bytes())
        .map_err(|error| Error::parse(&path, error.to_string()))?;
    for disk in disks.iter().filter(|disk| !excluded(&disk.name)) {
        let labels = [("device", disk.name.as_str())];
        let seconds = |milliseconds: u64| milliseconds as f64 * SECONDS_PER_MILLISECOND;
        let counters = [
            ("node_disk_reads_completed_total", disk.reads as f64),
            ("node_disk_reads_merged_total", disk.merged as f64),
            (
                "node_disk_read_bytes_total",
                disk.sectors_read as f64 * SECTOR_BYTES,
            ),
            (
                "node_disk_read_time_seconds_total",
                seconds(disk.time_reading),
            ),
            ("node_disk_writes_completed_total", disk.writes as f64),
            ("node_disk_writes_merged_total", disk.writes_merged as f64),
            (
                "node_disk_written_bytes_total",
                disk.sectors_written as f64 * SECTOR_BYTES,
            ),
            (
                "node_disk_write_time_seconds_total",
                seconds(disk.time_writing),
            ),
            (
                "node_disk_io_time_seconds_total",
                seconds(disk.time_in_progress),
            ),
            (
                "node_disk_io_time_weighted_seconds_total",
                seconds(disk.weighted_time_in_progress),
            ),
        ];
        for (name, value) in counters {
            out.counter(name, &labels, value);
        }
        out.gauge("node_disk_io_now", &labels, disk.in_progress as f64);
        let optional = [
            (
                "node_disk_discards_completed_total",
                disk.discards.map(|v| v as f64),
            ),
            (
                "node_disk_discards_merged_total",
                disk.discards_merged.map(|v| v as f64),
            ),
            (
                "node_disk_discarded_sectors_total",
                disk.sectors_discarded.map(|v| v as f64),
            ),
            (
                "node_disk_discard_time_seconds_total",
                disk.time_discarding.map(seconds),
            ),
            (
                "node_disk_flush_requests_total",
                disk.flushes.map(|v| v as f64),
            ),
            (
                "node_disk_flush_requests_time_seconds_total",
                disk.time_flushing.map(seconds),
            ),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                out.counter(name, &labels, value);
            }
        }
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
