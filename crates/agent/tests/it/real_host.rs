//! Collection from the real `/proc` of the machine running the tests: the main series exist and are plausible.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::value;
use gomon_agent::config::DEFAULT_FILESYSTEM_EXCLUDE_TYPES;
use gomon_agent::{AgentConfig, Collector, Subsystem};

#[tokio::test]
async fn the_main_series_exist_with_plausible_values() {
    let config = AgentConfig {
        hostname: Some("this-machine".to_owned()),
        ..AgentConfig::default()
    };
    let mut collector = Collector::new(config).expect("valid config");
    let first = collector.collect().await;
    // Let some CPU time pass between the two readings.
    let spin_until = std::time::Instant::now() + Duration::from_millis(300);
    while std::time::Instant::now() < spin_until {
        std::hint::black_box(0u64);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let snapshot = collector.collect().await;
    assert!(snapshot.timestamp_ms > first.timestamp_ms);

    for subsystem in [Subsystem::Cpu, Subsystem::Memory, Subsystem::System] {
        assert_eq!(collector.errors()[&subsystem], 0, "{subsystem}");
    }

    let modes = snapshot
        .series("node_cpu_seconds_total")
        .filter(|s| s.label("cpu") == Some("0"))
        .count();
    assert_eq!(modes, 8);
    assert_eq!(snapshot.series("node_cpu_seconds_total").count() % 8, 0);
    for sample in snapshot.series("node_cpu_seconds_total") {
        assert!(sample.value >= 0.0, "{sample:?}");
    }
    let usage = value(&snapshot, "gomon_cpu_usage_percent", &[]);
    assert!((0.0..=100.0).contains(&usage), "{usage}");
    assert!(
        snapshot
            .series("gomon_cpu_usage_percent")
            .all(|s| (0.0..=100.0).contains(&s.value))
    );

    let total = value(&snapshot, "node_memory_MemTotal_bytes", &[]);
    let available = value(&snapshot, "node_memory_MemAvailable_bytes", &[]);
    assert!(total > 64.0 * 1024.0 * 1024.0, "{total}");
    assert!(available > 0.0 && available <= total, "{available}");
    let percent = value(&snapshot, "gomon_memory_used_percent", &[]);
    assert!((0.0..=100.0).contains(&percent), "{percent}");

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let boot = value(&snapshot, "node_boot_time_seconds", &[]);
    assert!(boot > 1_000_000_000.0 && boot < now, "{boot}");
    let time = value(&snapshot, "node_time_seconds", &[]);
    assert!((now - time).abs() < 60.0, "{time}");
    let uptime = value(&snapshot, "gomon_uptime_seconds", &[]);
    assert!(
        (time - boot - uptime).abs() < 120.0,
        "boot {boot} uptime {uptime}"
    );
    assert!(value(&snapshot, "node_load1", &[]) >= 0.0);
    assert!(value(&snapshot, "node_context_switches_total", &[]) > 0.0);
    assert!(value(&snapshot, "node_procs_running", &[]) >= 1.0);

    // The families the "Node Exporter Full" dashboard reads beyond node-mixin: every Linux host has these files
    // (pressure and os-release may rightly be absent, which is no error either).
    for subsystem in [
        Subsystem::Pressure,
        Subsystem::Entropy,
        Subsystem::Os,
        Subsystem::Netstat,
        Subsystem::Softnet,
        Subsystem::Sockstat,
    ] {
        assert_eq!(collector.errors()[&subsystem], 0, "{subsystem}");
    }
    assert!(value(&snapshot, "node_netstat_Tcp_InSegs", &[]) > 0.0);
    assert!(value(&snapshot, "node_sockstat_sockets_used", &[]) > 0.0);
    assert!(value(&snapshot, "node_entropy_pool_size_bits", &[]) > 0.0);
    assert!(snapshot.series("node_softnet_processed_total").count() >= 1);

    // Disks, interfaces and real filesystems depend on the machine; what there is must be sane.
    assert!(
        snapshot
            .series("node_network_receive_bytes_total")
            .all(|s| s.label("device") != Some("lo") && s.value >= 0.0)
    );
    assert!(
        snapshot
            .series("node_disk_read_bytes_total")
            .all(|s| s.value >= 0.0)
    );
    for sample in snapshot.series("gomon_filesystem_used_percent") {
        assert!((0.0..=100.0).contains(&sample.value), "{sample:?}");
        assert!(sample.label("fstype") != Some("proc"), "{sample:?}");
    }
}

/// `MemTotal` of `/proc/meminfo`, in kB as the kernel writes it.
fn meminfo_total_kib() -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("read /proc/meminfo");
    let line = text
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .expect("MemTotal line");
    line.split_whitespace()
        .nth(1)
        .expect("MemTotal value")
        .parse()
        .expect("MemTotal number")
}

/// The interfaces listed in `/sys/class/net`, without `lo`.
fn interfaces() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("read /sys/class/net")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name != "lo")
        .collect();
    names.sort();
    names
}

/// `/sys/class/net/{device}/statistics/rx_bytes`, or `None` when the interface has gone.
fn rx_bytes(device: &str) -> Option<f64> {
    std::fs::read_to_string(format!("/sys/class/net/{device}/statistics/rx_bytes"))
        .ok()
        .map(|text| text.trim().parse().expect("rx_bytes number"))
}

/// The type of the filesystem mounted on `/` (the last, visible, mount there).
fn root_fstype() -> String {
    let text = std::fs::read_to_string("/proc/mounts").expect("read /proc/mounts");
    text.lines()
        .rev()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&"/")).then(|| fields[2].to_owned())
        })
        .expect("a mount on /")
}

#[tokio::test]
async fn values_equal_what_the_kernel_reports_at_the_same_moment() {
    // `/` is reported even where it is a type excluded by default (overlay in a container).
    let root_type = root_fstype();
    let config = AgentConfig {
        hostname: Some("this-machine".to_owned()),
        filesystem_exclude_types: DEFAULT_FILESYSTEM_EXCLUDE_TYPES
            .iter()
            .filter(|t| **t != root_type)
            .map(|t| (*t).to_owned())
            .collect(),
        ..AgentConfig::default()
    };
    let mut collector = Collector::new(config).expect("valid config");

    let devices = interfaces();
    let before: Vec<Option<f64>> = devices.iter().map(|d| rx_bytes(d)).collect();
    let snapshot = collector.collect().await;
    let after: Vec<Option<f64>> = devices.iter().map(|d| rx_bytes(d)).collect();

    assert_eq!(
        value(&snapshot, "node_memory_MemTotal_bytes", &[]),
        meminfo_total_kib() * 1024.0
    );

    let stats = rustix::fs::statvfs("/").expect("statvfs /");
    let root = snapshot
        .series("node_filesystem_size_bytes")
        .find(|s| s.label("mountpoint") == Some("/"))
        .expect("a size for /");
    assert_eq!(root.value, (stats.f_blocks * stats.f_frsize) as f64);

    for (device, (before, after)) in devices.iter().zip(before.into_iter().zip(after)) {
        // An interface that came or went while collecting proves nothing either way.
        let (Some(before), Some(after)) = (before, after) else {
            continue;
        };
        let received = value(
            &snapshot,
            "node_network_receive_bytes_total",
            &[("device", device)],
        );
        assert!(
            before <= received && received <= after,
            "{device}: {before} <= {received} <= {after}"
        );
    }
}
