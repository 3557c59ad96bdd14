//! The recent history of each host's CPU, memory, disk and network, computed from the batches as they pass: what
//! the console of `gomon up` shows on its Hosts page without a time-series database.
//!
//! Bounded: at most [`MAX_HOSTS`] hosts (a host silent for the whole window is dropped, and a new host beyond the
//! bound is not kept), and per host and measure at most one point every [`POINT_SPACING_MS`] over
//! [`WINDOW_MS`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use gomon_proto::prometheus::TimeSeries;

/// Most hosts kept.
pub const MAX_HOSTS: usize = 1000;
/// The window kept: an hour.
pub const WINDOW_MS: i64 = 3_600_000;
/// Closest spacing of two kept points: 360 points an hour at most.
pub const POINT_SPACING_MS: i64 = 10_000;

/// Filesystems that hold no data of their own, left out of "disk".
const PSEUDO_FILESYSTEMS: &[&str] = &[
    "tmpfs", "ramfs", "devtmpfs", "overlay", "squashfs", "nsfs", "proc", "sysfs", "cgroup2",
];

/// One measure's latest value and points (`[unix seconds, value]`, oldest first).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measure {
    /// The latest value.
    pub now: Option<f64>,
    /// The kept points.
    pub points: Vec<(i64, f64)>,
}

/// One host as the window holds it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostSnapshot {
    /// The host's name.
    pub host: String,
    /// Collection time of its last batch, in Unix milliseconds.
    pub last_ms: i64,
    /// Busy CPU, 0 to 1.
    pub cpu: Measure,
    /// Memory in use, 0 to 1.
    pub memory: Measure,
    /// The fullest filesystem, 0 to 1 used.
    pub disk: Measure,
    /// Bytes received and sent per second, loopback left out.
    pub network: Measure,
}

/// The counters a rate is computed from, at one batch.
#[derive(Clone, Copy, Debug)]
struct Counters {
    at_ms: i64,
    cpu_total: f64,
    cpu_idle: f64,
    network_bytes: f64,
}

#[derive(Debug, Default)]
struct Track {
    last_ms: i64,
    previous: Option<Counters>,
    cpu: VecDeque<(i64, f64)>,
    memory: VecDeque<(i64, f64)>,
    disk: VecDeque<(i64, f64)>,
    network: VecDeque<(i64, f64)>,
}

/// What one batch says of its host.
#[derive(Debug, Default)]
struct Reading {
    cpu_total: f64,
    cpu_idle: f64,
    cpus_seen: bool,
    memory_available: Option<f64>,
    memory_total: Option<f64>,
    filesystems: HashMap<String, (Option<f64>, Option<f64>)>,
    network_bytes: f64,
    network_seen: bool,
}

impl Reading {
    fn of(series: &[TimeSeries]) -> Self {
        let mut reading = Reading::default();
        for one in series {
            let label = |name: &str| {
                one.labels
                    .iter()
                    .find(|label| label.name == name)
                    .map(|label| label.value.as_str())
            };
            let Some(value) = one.samples.last().map(|sample| sample.value) else {
                continue;
            };
            if !value.is_finite() {
                continue;
            }
            match label("__name__").unwrap_or_default() {
                "node_cpu_seconds_total" => {
                    reading.cpus_seen = true;
                    reading.cpu_total += value;
                    if label("mode") == Some("idle") {
                        reading.cpu_idle += value;
                    }
                }
                "node_memory_MemAvailable_bytes" => reading.memory_available = Some(value),
                "node_memory_MemTotal_bytes" => reading.memory_total = Some(value),
                name @ ("node_filesystem_avail_bytes" | "node_filesystem_size_bytes") => {
                    if PSEUDO_FILESYSTEMS.contains(&label("fstype").unwrap_or_default()) {
                        continue;
                    }
                    let mountpoint = label("mountpoint").unwrap_or_default().to_owned();
                    let entry = reading.filesystems.entry(mountpoint).or_default();
                    if name == "node_filesystem_avail_bytes" {
                        entry.0 = Some(value);
                    } else {
                        entry.1 = Some(value);
                    }
                }
                "node_network_receive_bytes_total" | "node_network_transmit_bytes_total"
                    if label("device") != Some("lo") =>
                {
                    reading.network_seen = true;
                    reading.network_bytes += value;
                }
                _ => {}
            }
        }
        reading
    }

    fn memory(&self) -> Option<f64> {
        match (self.memory_available, self.memory_total) {
            (Some(available), Some(total)) if total > 0.0 => Some(1.0 - available / total),
            _ => None,
        }
    }

    fn disk(&self) -> Option<f64> {
        self.filesystems
            .values()
            .filter_map(|(available, size)| match (available, size) {
                (Some(available), Some(size)) if *size > 0.0 => Some(1.0 - available / size),
                _ => None,
            })
            .reduce(f64::max)
    }
}

/// The window of every host.
#[derive(Debug, Default)]
pub struct HostWindow {
    hosts: Mutex<HashMap<String, Track>>,
}

impl HostWindow {
    /// An empty window.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in `host`'s batch of `series` collected at `timestamp_ms`.
    pub fn update(&self, host: &str, timestamp_ms: i64, series: &[TimeSeries]) {
        let reading = Reading::of(series);
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        if !hosts.contains_key(host) {
            hosts.retain(|_, track| track.last_ms > timestamp_ms - WINDOW_MS);
            if hosts.len() >= MAX_HOSTS {
                return;
            }
        }
        let track = hosts.entry(host.to_owned()).or_default();
        if timestamp_ms <= track.last_ms {
            return; // a batch replayed, or older than one already taken in
        }
        track.last_ms = timestamp_ms;
        let counters = Counters {
            at_ms: timestamp_ms,
            cpu_total: reading.cpu_total,
            cpu_idle: reading.cpu_idle,
            network_bytes: reading.network_bytes,
        };
        if let Some(previous) = track.previous {
            let seconds = (counters.at_ms - previous.at_ms) as f64 / 1000.0;
            let total = counters.cpu_total - previous.cpu_total;
            let idle = counters.cpu_idle - previous.cpu_idle;
            if reading.cpus_seen && total > 0.0 && idle >= 0.0 {
                push(
                    &mut track.cpu,
                    timestamp_ms,
                    (1.0 - idle / total).clamp(0.0, 1.0),
                );
            }
            let bytes = counters.network_bytes - previous.network_bytes;
            if reading.network_seen && seconds > 0.0 && bytes >= 0.0 {
                push(&mut track.network, timestamp_ms, bytes / seconds);
            }
        }
        track.previous = Some(counters);
        if let Some(memory) = reading.memory() {
            push(&mut track.memory, timestamp_ms, memory);
        }
        if let Some(disk) = reading.disk() {
            push(&mut track.disk, timestamp_ms, disk);
        }
    }

    /// Every host seen within the window, by name, as of `now_ms`.
    pub fn snapshot(&self, now_ms: i64) -> Vec<HostSnapshot> {
        let hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        let since = now_ms - WINDOW_MS;
        let measure = |points: &VecDeque<(i64, f64)>| {
            let points: Vec<(i64, f64)> = points
                .iter()
                .filter(|(at_ms, _)| *at_ms > since)
                .map(|&(at_ms, value)| (at_ms / 1000, value))
                .collect();
            Measure {
                now: points.last().map(|&(_, value)| value),
                points,
            }
        };
        let mut snapshot: Vec<HostSnapshot> = hosts
            .iter()
            .filter(|(_, track)| track.last_ms > since)
            .map(|(host, track)| HostSnapshot {
                host: host.clone(),
                last_ms: track.last_ms,
                cpu: measure(&track.cpu),
                memory: measure(&track.memory),
                disk: measure(&track.disk),
                network: measure(&track.network),
            })
            .collect();
        snapshot.sort_by(|a, b| a.host.cmp(&b.host));
        snapshot
    }
}

/// Adds a point unless the last one is closer than [`POINT_SPACING_MS`] (then the newest value replaces it), and
/// drops the points older than the window.
fn push(points: &mut VecDeque<(i64, f64)>, at_ms: i64, value: f64) {
    match points.back_mut() {
        Some(last) if at_ms - last.0 < POINT_SPACING_MS => *last = (last.0, value),
        _ => points.push_back((at_ms, value)),
    }
    while points
        .front()
        .is_some_and(|(first, _)| *first <= at_ms - WINDOW_MS)
    {
        points.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use gomon_proto::prometheus::{Label, Sample};

    use super::*;

    fn series(name: &str, labels: &[(&str, &str)], value: f64) -> TimeSeries {
        let mut all = vec![Label {
            name: "__name__".into(),
            value: name.into(),
        }];
        all.extend(labels.iter().map(|(name, value)| Label {
            name: (*name).into(),
            value: (*value).into(),
        }));
        TimeSeries {
            labels: all,
            samples: vec![Sample {
                value,
                timestamp: 0,
            }],
        }
    }

    fn batch(idle: f64, busy: f64, network: f64) -> Vec<TimeSeries> {
        vec![
            series(
                "node_cpu_seconds_total",
                &[("cpu", "0"), ("mode", "idle")],
                idle,
            ),
            series(
                "node_cpu_seconds_total",
                &[("cpu", "0"), ("mode", "user")],
                busy,
            ),
            series("node_memory_MemAvailable_bytes", &[], 250.0),
            series("node_memory_MemTotal_bytes", &[], 1000.0),
            series(
                "node_filesystem_avail_bytes",
                &[("mountpoint", "/"), ("fstype", "ext4")],
                40.0,
            ),
            series(
                "node_filesystem_size_bytes",
                &[("mountpoint", "/"), ("fstype", "ext4")],
                100.0,
            ),
            series(
                "node_filesystem_avail_bytes",
                &[("mountpoint", "/run"), ("fstype", "tmpfs")],
                0.0,
            ),
            series(
                "node_filesystem_size_bytes",
                &[("mountpoint", "/run"), ("fstype", "tmpfs")],
                100.0,
            ),
            series(
                "node_network_receive_bytes_total",
                &[("device", "eth0")],
                network,
            ),
            series(
                "node_network_transmit_bytes_total",
                &[("device", "eth0")],
                network,
            ),
            series(
                "node_network_receive_bytes_total",
                &[("device", "lo")],
                network * 100.0,
            ),
        ]
    }

    #[test]
    fn measures_come_from_counters_and_gauges() {
        let window = HostWindow::new();
        window.update("web-1", 1_000_000, &batch(100.0, 100.0, 1000.0));
        // 10 s later: 4 s idle and 6 s busy of 10; 2 x 500 bytes more.
        window.update("web-1", 1_010_000, &batch(104.0, 106.0, 1500.0));
        let [host] = window.snapshot(1_010_000).try_into().expect("one host");
        assert_eq!(host.host, "web-1");
        assert_eq!(host.cpu.now, Some(0.6));
        assert_eq!(host.memory.now, Some(0.75));
        assert_eq!(host.disk.now, Some(0.6), "tmpfs is left out");
        assert_eq!(
            host.network.now,
            Some(100.0),
            "bytes per second, loopback left out"
        );
        assert_eq!(host.cpu.points, [(1010, 0.6)]);
        assert_eq!(host.memory.points.len(), 2);
    }

    #[test]
    fn the_window_is_bounded_in_time_points_and_hosts() {
        let window = HostWindow::new();
        for step in 0..2000_i64 {
            window.update("web-1", step * 5_000, &batch(step as f64, step as f64, 0.0));
        }
        let [host] = window.snapshot(2000 * 5_000).try_into().expect("one host");
        assert!(
            host.memory.points.len() <= 361,
            "{}",
            host.memory.points.len()
        );
        assert!(
            host.memory.points.len() >= 359,
            "{}",
            host.memory.points.len()
        );
        for index in 0..MAX_HOSTS + 10 {
            window.update(&format!("h{index}"), 10_000_000, &batch(0.0, 0.0, 0.0));
        }
        assert_eq!(window.snapshot(10_000_000).len(), MAX_HOSTS);
        // An hour later the silent hosts are gone and a new one is kept.
        window.update("late", 10_000_000 + WINDOW_MS + 1, &batch(0.0, 0.0, 0.0));
        let hosts = window.snapshot(10_000_000 + WINDOW_MS + 1);
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].host, "late");
    }

    #[test]
    fn a_replayed_batch_or_a_counter_reset_adds_no_rate() {
        let window = HostWindow::new();
        window.update("web-1", 1_000_000, &batch(100.0, 100.0, 1000.0));
        window.update("web-1", 1_000_000, &batch(0.0, 0.0, 0.0));
        window.update("web-1", 1_020_000, &batch(1.0, 1.0, 10.0));
        let [host] = window.snapshot(1_020_000).try_into().expect("one host");
        assert!(host.cpu.points.is_empty(), "{:?}", host.cpu.points);
        assert!(host.network.points.is_empty(), "{:?}", host.network.points);
    }
}
