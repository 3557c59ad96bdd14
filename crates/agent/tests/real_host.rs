//! Collection from the real `/proc` of the machine running the tests: the main series exist and are plausible.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::value;
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
