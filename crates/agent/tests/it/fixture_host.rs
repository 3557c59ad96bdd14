//! Collection from a fake host built from fixture files with known values.

use std::path::Path;

use crate::common::{FakeHost, label_values, value};
use gomon_agent::{AgentConfig, Collector, Kind, Subsystem};

#[tokio::test]
async fn every_sample_carries_the_host_label_and_sorted_labels() {
    let host = FakeHost::new();
    let mut collector = Collector::new(host.config.clone()).expect("valid config");
    assert_eq!(collector.host(), "node-a");
    let snapshot = collector.collect().await;
    assert_eq!(snapshot.host, "node-a");
    assert!(snapshot.timestamp_ms > 1_700_000_000_000);
    assert!(!snapshot.samples.is_empty());
    for sample in &snapshot.samples {
        assert_eq!(sample.label("host"), Some("node-a"), "{sample:?}");
        let names: Vec<&str> = sample.labels.iter().map(|(n, _)| n.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "{sample:?}");
    }
    assert!(
        collector.errors().values().all(|n| *n == 0),
        "{:?}",
        collector.errors()
    );
}

#[tokio::test]
async fn cpu_seconds_per_core_and_mode() {
    let host = FakeHost::new();
    let mut collector = Collector::new(host.config.clone()).expect("valid config");
    let snapshot = collector.collect().await;
    let expected = [
        ("user", 50.0),
        ("nice", 2.5),
        ("system", 15.0),
        ("idle", 400.0),
        ("iowait", 5.0),
        ("irq", 0.0),
        ("softirq", 1.0),
        ("steal", 1.5),
    ];
    for cpu in ["0", "1"] {
        for (mode, seconds) in expected {
            let sample = snapshot
                .find("node_cpu_seconds_total", &[("cpu", cpu), ("mode", mode)])
                .unwrap_or_else(|| panic!("cpu {cpu} mode {mode}"));
            assert_eq!(sample.value, seconds, "cpu {cpu} mode {mode}");
            assert_eq!(sample.kind, Kind::Counter);
        }
    }
    assert_eq!(snapshot.series("node_cpu_seconds_total").count(), 16);
    // The first collection has nothing to compare with.
    assert_eq!(snapshot.series("gomon_cpu_usage_percent").count(), 0);
}

#[tokio::test]
async fn cpu_usage_is_the_difference_between_two_collections() {
    let host = FakeHost::new();
    let mut collector = Collector::new(host.config.clone()).expect("valid config");
    collector.collect().await;
    host.replace("stat", "stat-second");
    let snapshot = collector.collect().await;
    // cpu0: 1000 ticks elapsed, 600 idle + iowait; cpu1: 1000 elapsed, 900 idle + iowait; all: 2000 and 1500.
    assert_eq!(value(&snapshot, "gomon_cpu_usage_percent", &[]), 25.0);
    assert_eq!(
        value(&snapshot, "gomon_cpu_usage_percent", &[("cpu", "0")]),
        40.0
    );
    assert_eq!(
        value(&snapshot, "gomon_cpu_usage_percent", &[("cpu", "1")]),
        10.0
    );
    let usage = snapshot
        .find("gomon_cpu_usage_percent", &[])
        .expect("overall");
    assert_eq!(usage.kind, Kind::Gauge);
    assert_eq!(
        value(
            &snapshot,
            "node_cpu_seconds_total",
            &[("cpu", "0"), ("mode", "user")]
        ),
        53.0
    );
    assert_eq!(
        value(&snapshot, "node_context_switches_total", &[]),
        123_457_000.0
    );
    // Same readings again: no tick elapsed, so no usage rather than a division by zero.
    let snapshot = collector.collect().await;
    assert_eq!(snapshot.series("gomon_cpu_usage_percent").count(), 0);
}

#[tokio::test]
async fn memory_in_bytes_and_derived_usage() {
    let host = FakeHost::new();
    let snapshot = Collector::new(host.config.clone())
        .expect("valid config")
        .collect()
        .await;
    let kib = |n: f64| n * 1024.0;
    for (name, expected) in [
        ("node_memory_MemTotal_bytes", kib(16_000_000.0)),
        ("node_memory_MemFree_bytes", kib(2_000_000.0)),
        ("node_memory_MemAvailable_bytes", kib(12_000_000.0)),
        ("node_memory_Buffers_bytes", kib(500_000.0)),
        ("node_memory_Cached_bytes", kib(6_000_000.0)),
        ("node_memory_SwapTotal_bytes", kib(4_000_000.0)),
        ("node_memory_SwapFree_bytes", kib(3_000_000.0)),
        ("gomon_memory_used_bytes", kib(4_000_000.0)),
        ("gomon_memory_used_percent", 25.0),
        ("gomon_swap_used_bytes", kib(1_000_000.0)),
    ] {
        assert_eq!(value(&snapshot, name, &[]), expected, "{name}");
    }
}

#[tokio::test]
async fn system_load_processes_boot_time_and_uptime() {
    let host = FakeHost::new();
    let snapshot = Collector::new(host.config.clone())
        .expect("valid config")
        .collect()
        .await;
    for (name, expected) in [
        ("node_load1", 1.5),
        ("node_load5", 0.75),
        ("node_load15", 0.25),
        ("node_boot_time_seconds", 1_700_000_000.0),
        ("node_procs_running", 4.0),
        ("node_procs_blocked", 2.0),
        ("node_context_switches_total", 123_456_789.0),
        ("gomon_uptime_seconds", 12_345.67),
    ] {
        assert_eq!(value(&snapshot, name, &[]), expected, "{name}");
    }
    let time = value(&snapshot, "node_time_seconds", &[]);
    assert!((time * 1000.0 - snapshot.timestamp_ms as f64).abs() < 1.0);
    let kind = |name: &str| snapshot.find(name, &[]).map(|s| s.kind);
    assert_eq!(kind("node_context_switches_total"), Some(Kind::Counter));
    assert_eq!(kind("node_load1"), Some(Kind::Gauge));
}

#[tokio::test]
async fn disks_in_bytes_and_seconds_without_ram_and_loop_devices() {
    let host = FakeHost::new();
    let snapshot = Collector::new(host.config.clone())
        .expect("valid config")
        .collect()
        .await;
    assert_eq!(
        label_values(&snapshot, "node_disk_read_bytes_total", "device"),
        vec!["vda", "vda1"]
    );
    let vda = [("device", "vda")];
    for (name, expected) in [
        ("node_disk_read_bytes_total", 20_000.0 * 512.0),
        ("node_disk_written_bytes_total", 40_000.0 * 512.0),
        ("node_disk_reads_completed_total", 1000.0),
        ("node_disk_writes_completed_total", 2000.0),
        ("node_disk_io_time_seconds_total", 1.5),
    ] {
        assert_eq!(value(&snapshot, name, &vda), expected, "{name}");
    }
    assert_eq!(
        value(
            &snapshot,
            "node_disk_read_bytes_total",
            &[("device", "vda1")]
        ),
        18_000.0 * 512.0
    );
}

#[tokio::test]
async fn network_counters_without_loopback_and_link_state_from_sysfs() {
    let host = FakeHost::new();
    let snapshot = Collector::new(host.config.clone())
        .expect("valid config")
        .collect()
        .await;
    assert_eq!(
        label_values(&snapshot, "node_network_receive_bytes_total", "device"),
        vec!["eth0", "eth1"]
    );
    let eth0 = [("device", "eth0")];
    for (name, expected) in [
        ("node_network_receive_bytes_total", 1_000_000.0),
        ("node_network_receive_packets_total", 2000.0),
        ("node_network_receive_errs_total", 3.0),
        ("node_network_receive_drop_total", 4.0),
        ("node_network_transmit_bytes_total", 500_000.0),
        ("node_network_transmit_packets_total", 1500.0),
        ("node_network_transmit_errs_total", 5.0),
        ("node_network_transmit_drop_total", 6.0),
    ] {
        assert_eq!(value(&snapshot, name, &eth0), expected, "{name}");
    }
    assert_eq!(value(&snapshot, "node_network_up", &eth0), 1.0);
    assert_eq!(
        value(&snapshot, "node_network_up", &[("device", "eth1")]),
        0.0
    );

    // Loopback is only excluded by default; a prefix pattern excludes a family.
    let config = AgentConfig {
        network_exclude_devices: vec!["eth*".to_owned()],
        ..host.config.clone()
    };
    let snapshot = Collector::new(config)
        .expect("valid config")
        .collect()
        .await;
    assert_eq!(
        label_values(&snapshot, "node_network_receive_bytes_total", "device"),
        vec!["lo"]
    );
    assert_eq!(
        value(
            &snapshot,
            "node_network_transmit_bytes_total",
            &[("device", "lo")]
        ),
        5000.0
    );
}

#[tokio::test]
async fn filesystems_without_pseudo_types_resolved_under_root_fs() {
    let host = FakeHost::new();
    let root = host.config.root_fs.clone();
    let snapshot = Collector::new(host.config.clone())
        .expect("valid config")
        .collect()
        .await;
    // proc, sysfs, devtmpfs, tmpfs, cgroup2 and overlay are excluded; /missing does not exist under root_fs.
    assert_eq!(
        label_values(&snapshot, "node_filesystem_device_error", "mountpoint"),
        vec!["/", "/data", "/missing", "/mnt/my disk"]
    );
    assert_eq!(
        label_values(&snapshot, "node_filesystem_size_bytes", "mountpoint"),
        vec!["/", "/data", "/mnt/my disk"]
    );
    let missing = [
        ("device", "/dev/vdd1"),
        ("fstype", "ext4"),
        ("mountpoint", "/missing"),
    ];
    assert_eq!(
        value(&snapshot, "node_filesystem_device_error", &missing),
        1.0
    );

    for (device, fstype, mountpoint, dir) in [
        ("/dev/vda1", "ext4", "/", root.clone()),
        ("/dev/vdb1", "xfs", "/data", root.join("data")),
        (
            "/dev/vdc1",
            "ext4",
            "/mnt/my disk",
            root.join("mnt/my disk"),
        ),
    ] {
        let labels = [
            ("device", device),
            ("fstype", fstype),
            ("mountpoint", mountpoint),
        ];
        let expected = real_statvfs(&dir);
        assert_eq!(
            value(&snapshot, "node_filesystem_device_error", &labels),
            0.0
        );
        let size = value(&snapshot, "node_filesystem_size_bytes", &labels);
        let free = value(&snapshot, "node_filesystem_free_bytes", &labels);
        let avail = value(&snapshot, "node_filesystem_avail_bytes", &labels);
        assert_eq!(size, expected.0, "{mountpoint}");
        assert_eq!(
            value(&snapshot, "node_filesystem_files", &labels),
            expected.1,
            "{mountpoint}"
        );
        let files_free = value(&snapshot, "node_filesystem_files_free", &labels);
        assert!(files_free <= expected.1, "{mountpoint}");
        assert!(avail <= free && free <= size, "{mountpoint}");
        let used = value(
            &snapshot,
            "gomon_filesystem_used_bytes",
            &[("mountpoint", mountpoint)],
        );
        assert_eq!(used, size - free, "{mountpoint}");
        let percent = value(&snapshot, "gomon_filesystem_used_percent", &labels);
        assert_eq!(percent, used / (used + avail) * 100.0, "{mountpoint}");
    }
}

/// Size and inode count of the filesystem holding `dir`, which do not change while the test runs.
fn real_statvfs(dir: &Path) -> (f64, f64) {
    let stats = rustix::fs::statvfs(dir).expect("statvfs");
    let block = if stats.f_frsize > 0 {
        stats.f_frsize
    } else {
        stats.f_bsize
    };
    ((stats.f_blocks * block) as f64, stats.f_files as f64)
}

#[tokio::test]
async fn a_missing_file_is_counted_and_the_other_subsystems_still_report() {
    let host = FakeHost::new();
    host.remove("meminfo");
    host.remove("loadavg");
    host.remove("net/dev");
    let mut collector = Collector::new(host.config.clone()).expect("valid config");
    let snapshot = collector.collect().await;
    assert_eq!(snapshot.series("node_memory_MemTotal_bytes").count(), 0);
    assert_eq!(snapshot.series("node_load1").count(), 0);
    assert_eq!(
        snapshot.series("node_network_receive_bytes_total").count(),
        0
    );
    // The rest of the system subsystem still reports.
    assert_eq!(value(&snapshot, "node_procs_running", &[]), 4.0);
    assert_eq!(value(&snapshot, "gomon_uptime_seconds", &[]), 12_345.67);
    assert_eq!(snapshot.series("node_cpu_seconds_total").count(), 16);
    assert_eq!(snapshot.series("node_disk_read_bytes_total").count(), 2);
    assert!(snapshot.series("node_filesystem_size_bytes").count() > 0);

    collector.collect().await;
    let errors = collector.errors();
    assert_eq!(errors[&Subsystem::Memory], 2);
    assert_eq!(errors[&Subsystem::System], 2);
    assert_eq!(errors[&Subsystem::Network], 2);
    assert_eq!(errors[&Subsystem::Cpu], 0);
    assert_eq!(errors[&Subsystem::Diskstats], 0);
    assert_eq!(errors[&Subsystem::Filesystem], 0);
    assert_eq!(errors.len(), Subsystem::ALL.len());
    assert_eq!(collector.filesystem_timeouts(), 0);
}

#[tokio::test]
async fn malformed_files_are_errors_not_panics() {
    let host = FakeHost::new();
    let garbage = "this is not\na proc file: at all\n\u{0}\u{1}";
    for file in [
        "stat",
        "meminfo",
        "loadavg",
        "uptime",
        "diskstats",
        "net/dev",
    ] {
        std::fs::write(host.config.proc_root.join(file), garbage).expect("write");
    }
    let mut collector = Collector::new(host.config.clone()).expect("valid config");
    let snapshot = collector.collect().await;
    assert!(
        snapshot
            .samples
            .iter()
            .all(|s| !s.name.starts_with("node_cpu"))
    );
    let errors = collector.errors();
    for subsystem in [
        Subsystem::Cpu,
        Subsystem::Memory,
        Subsystem::Diskstats,
        Subsystem::Network,
    ] {
        assert_eq!(errors[&subsystem], 1, "{subsystem}");
    }
    assert_eq!(errors[&Subsystem::System], 2, "loadavg and uptime");
}

#[test]
fn collecting_can_run_on_a_spawned_task() {
    fn send<T: Send>(_: &T) {}
    let host = FakeHost::new();
    let mut collector = Collector::new(host.config.clone()).expect("valid config");
    let cycle = collector.collect();
    send(&cycle);
}

#[tokio::test]
async fn a_mount_point_in_another_encoding_does_not_hide_the_others() {
    let host = FakeHost::new();
    let mut mounts = b"/dev/sdz1 /media/caf\xe9 vfat rw 0 0\n".to_vec();
    mounts.extend(std::fs::read(host.config.proc_root.join("mounts")).expect("read"));
    std::fs::write(host.config.proc_root.join("mounts"), mounts).expect("write");
    let mut collector = Collector::new(host.config.clone()).expect("valid config");
    let snapshot = collector.collect().await;
    assert_eq!(collector.errors()[&Subsystem::Filesystem], 0);
    let labels = [
        ("device", "/dev/sdz1"),
        ("fstype", "vfat"),
        ("mountpoint", "/media/caf\u{fffd}"),
    ];
    assert_eq!(
        value(&snapshot, "node_filesystem_device_error", &labels),
        1.0
    );
    assert_eq!(
        label_values(&snapshot, "node_filesystem_size_bytes", "mountpoint"),
        vec!["/", "/data", "/mnt/my disk"]
    );
}

#[tokio::test]
async fn cpu_counters_going_back_give_no_absurd_usage() {
    let host = FakeHost::new();
    let mut collector = Collector::new(host.config.clone()).expect("valid config");
    collector.collect().await;
    // After a reboot (or a wrap) every tick count is smaller than in the first reading.
    let reset = "cpu  400 10 200 3000 40 0 20 30 0 0\n\
                 cpu0 300 5 100 1000 20 0 10 15 0 0\n\
                 cpu1 100 5 100 2000 20 0 10 15 0 0\n\
                 ctxt 1000\n\
                 btime 1700100000\n\
                 procs_running 1\n\
                 procs_blocked 0\n";
    std::fs::write(host.config.proc_root.join("stat"), reset).expect("write");
    let snapshot = collector.collect().await;
    for sample in snapshot.series("gomon_cpu_usage_percent") {
        assert!((0.0..=100.0).contains(&sample.value), "{sample:?}");
    }
    // The raw counters report the new readings as they are.
    for (cpu, mode, seconds) in [
        ("0", "user", 3.0),
        ("0", "idle", 10.0),
        ("1", "user", 1.0),
        ("1", "idle", 20.0),
        ("1", "steal", 0.15),
    ] {
        assert_eq!(
            value(
                &snapshot,
                "node_cpu_seconds_total",
                &[("cpu", cpu), ("mode", mode)]
            ),
            seconds,
            "cpu {cpu} mode {mode}"
        );
    }
    assert_eq!(snapshot.series("node_cpu_seconds_total").count(), 16);
    assert_eq!(value(&snapshot, "node_context_switches_total", &[]), 1000.0);

    // The reset readings are the new baseline: the next cycle measures from them.
    let later = "cpu  500 10 200 3100 40 0 20 30 0 0\n\
                 cpu0 400 5 100 1000 20 0 10 15 0 0\n\
                 cpu1 100 5 100 2100 20 0 10 15 0 0\n\
                 ctxt 2000\n";
    std::fs::write(host.config.proc_root.join("stat"), later).expect("write");
    let snapshot = collector.collect().await;
    assert_eq!(value(&snapshot, "gomon_cpu_usage_percent", &[]), 50.0);
    assert_eq!(
        value(&snapshot, "gomon_cpu_usage_percent", &[("cpu", "0")]),
        100.0
    );
    assert_eq!(
        value(&snapshot, "gomon_cpu_usage_percent", &[("cpu", "1")]),
        0.0
    );
    assert_eq!(collector.errors()[&Subsystem::Cpu], 0);
}

#[tokio::test]
async fn an_interface_gone_between_two_cycles_has_no_series_and_no_error() {
    let host = FakeHost::new();
    let mut collector = Collector::new(host.config.clone()).expect("valid config");
    let first = collector.collect().await;
    assert_eq!(
        label_values(&first, "node_network_receive_bytes_total", "device"),
        vec!["eth0", "eth1"]
    );
    let without_eth1 = "Inter-|   Receive                                                |  Transmit\n \
        face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
        lo:    6000      60    0    0    0     0          0         0     6000      60    0    0    0     0       0          0\n  \
        eth0: 1100000    2100    3    4    0     0          0         0   510000    1510    5    6    0     0       0          0\n";
    std::fs::write(host.config.proc_root.join("net/dev"), without_eth1).expect("write");
    let snapshot = collector.collect().await;
    assert!(
        snapshot
            .samples
            .iter()
            .all(|s| s.label("device") != Some("eth1")),
        "eth1 still reported"
    );
    assert_eq!(
        label_values(&snapshot, "node_network_receive_bytes_total", "device"),
        vec!["eth0"]
    );
    assert_eq!(
        value(
            &snapshot,
            "node_network_receive_bytes_total",
            &[("device", "eth0")]
        ),
        1_100_000.0
    );
    assert_eq!(
        value(&snapshot, "node_network_up", &[("device", "eth0")]),
        1.0
    );
    assert!(
        collector.errors().values().all(|n| *n == 0),
        "{:?}",
        collector.errors()
    );
}

#[tokio::test]
async fn the_series_node_mixin_needs_from_fixture_files() {
    let host = FakeHost::new();
    let mut collector = Collector::new(host.config.clone()).expect("valid config");
    let snapshot = collector.collect().await;
    let kib = |n: f64| n * 1024.0;
    for (name, labels, expected) in [
        ("node_memory_Slab_bytes", &[][..], kib(700_000.0)),
        ("node_memory_Active_anon_bytes", &[], kib(1_000_000.0)),
        ("node_memory_HugePages_Total", &[], 0.0),
        ("node_memory_Hugepagesize_bytes", &[], kib(2048.0)),
        ("node_vmstat_pgmajfault", &[], 161_516.0),
        ("node_vmstat_pgpgout", &[], 326_241_256.0),
        ("node_vmstat_oom_kill", &[], 2.0),
        ("node_filefd_allocated", &[], 1024.0),
        ("node_filefd_maximum", &[], 1_631_329.0),
        ("node_nf_conntrack_entries", &[], 300.0),
        ("node_nf_conntrack_entries_limit", &[], 400.0),
        ("node_nf_conntrack_stat_found", &[], 3.0),
        ("node_nf_conntrack_stat_search_restart", &[], 17.0),
        (
            "node_disk_io_time_weighted_seconds_total",
            &[("device", "vda")],
            1.3,
        ),
        (
            "node_disk_read_time_seconds_total",
            &[("device", "vda")],
            0.5,
        ),
        ("node_disk_writes_merged_total", &[("device", "vda")], 30.0),
        ("node_disk_io_now", &[("device", "vda")], 0.0),
        (
            "node_disk_discards_completed_total",
            &[("device", "vda")],
            0.0,
        ),
        ("node_md_disks_required", &[("device", "md0")], 2.0),
        (
            "node_md_disks",
            &[("device", "md0"), ("state", "active")],
            1.0,
        ),
        (
            "node_md_disks",
            &[("device", "md0"), ("state", "failed")],
            1.0,
        ),
        ("node_bonding_slaves", &[("master", "bond0")], 2.0),
        ("node_bonding_active", &[("master", "bond0")], 1.0),
        ("node_textfile_scrape_error", &[], 0.0),
    ] {
        assert_eq!(value(&snapshot, name, labels), expected, "{name}{labels:?}");
    }
    // Read-only from the mount options, for a mount statvfs cannot answer too.
    let mount = |device: &'static str, fstype: &'static str, mountpoint: &'static str| {
        [
            ("device", device),
            ("fstype", fstype),
            ("mountpoint", mountpoint),
        ]
    };
    assert_eq!(
        value(
            &snapshot,
            "node_filesystem_readonly",
            &mount("/dev/vda1", "ext4", "/")
        ),
        0.0
    );
    assert_eq!(
        value(
            &snapshot,
            "node_filesystem_readonly",
            &mount("/dev/vdd1", "ext4", "/missing")
        ),
        1.0
    );
    // The real kernel's clock and name: adjtimex and uname know no proc_root.
    assert_eq!(snapshot.series("node_timex_sync_status").count(), 1);
    assert_eq!(snapshot.series("node_timex_maxerror_seconds").count(), 1);
    let uname = snapshot.series("node_uname_info").next().expect("uname");
    assert_eq!(uname.label("sysname"), Some("Linux"));
    let kind = |name: &str| snapshot.series(name).next().map(|s| s.kind);
    assert_eq!(kind("node_vmstat_pgmajfault"), Some(Kind::Counter));
    assert_eq!(kind("node_filefd_allocated"), Some(Kind::Gauge));
    assert_eq!(kind("node_disk_io_now"), Some(Kind::Gauge));
    assert!(
        collector.errors().values().all(|n| *n == 0),
        "{:?}",
        collector.errors()
    );
}

#[tokio::test]
async fn new_sources_missing_or_garbled_are_counted_and_never_stop_the_others() {
    let host = FakeHost::new();
    // Modules and drivers not loaded: no series, no error.
    for absent in ["sys/net/netfilter/nf_conntrack_count", "mdstat"] {
        host.remove(absent);
    }
    let mut collector = Collector::new(host.config.clone()).expect("valid config");
    let snapshot = collector.collect().await;
    assert_eq!(snapshot.series("node_nf_conntrack_entries").count(), 0);
    assert_eq!(snapshot.series("node_md_disks").count(), 0);
    assert!(collector.errors().values().all(|n| *n == 0));

    // Files that must be there, garbled: each counted in its subsystem, the rest still reported.
    let garbage = "this is not\na proc file: at all\n\u{0}\u{1}";
    std::fs::write(host.config.proc_root.join("sys/fs/file-nr"), garbage).expect("write");
    // vmstat's other lines are not read: a chosen field that is not a number is the error.
    std::fs::write(host.config.proc_root.join("vmstat"), "pgmajfault lots\n").expect("write");
    std::fs::write(host.config.proc_root.join("mdstat"), garbage).expect("write");
    let snapshot = collector.collect().await;
    let errors = collector.errors();
    for subsystem in [Subsystem::Vmstat, Subsystem::Filefd, Subsystem::Mdadm] {
        assert_eq!(errors[&subsystem], 1, "{subsystem}");
    }
    assert_eq!(snapshot.series("node_cpu_seconds_total").count(), 16);
    assert!(snapshot.series("node_memory_MemTotal_bytes").count() == 1);
    assert!(snapshot.series("node_filesystem_readonly").count() > 0);
    assert_eq!(value(&snapshot, "node_textfile_scrape_error", &[]), 0.0);
}

/// A series expected from the fixtures: name, labels besides `host`, value.
type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

#[tokio::test]
async fn the_node_exporter_full_families_from_fixture_files() {
    let host = FakeHost::new();
    let mut collector = Collector::new(host.config.clone()).expect("valid config");
    let snapshot = collector.collect().await;
    let page = rustix::param::page_size() as f64;
    let counters: &[Expected] = &[
        ("node_pressure_cpu_waiting_seconds_total", &[], 120.0),
        ("node_pressure_io_waiting_seconds_total", &[], 45.0),
        ("node_pressure_io_stalled_seconds_total", &[], 30.0),
        ("node_pressure_memory_waiting_seconds_total", &[], 2.5),
        ("node_pressure_memory_stalled_seconds_total", &[], 0.5),
        ("node_netstat_Tcp_InSegs", &[], 30_000.0),
        ("node_netstat_Tcp_InErrs", &[], 2.0),
        ("node_netstat_TcpExt_ListenDrops", &[], 12.0),
        ("node_netstat_IpExt_InOctets", &[], 5_000_000.0),
        ("node_netstat_Udp_InErrors", &[], 1.0),
        ("node_netstat_Ip6_InOctets", &[], 64_000.0),
        ("node_netstat_Icmp6_OutMsgs", &[], 4.0),
        ("node_softnet_processed_total", &[("cpu", "0")], 4096.0),
        ("node_softnet_processed_total", &[("cpu", "1")], 8192.0),
        ("node_softnet_dropped_total", &[("cpu", "0")], 1.0),
        ("node_softnet_times_squeezed_total", &[("cpu", "0")], 2.0),
        ("node_softnet_received_rps_total", &[("cpu", "0")], 4.0),
        ("node_softnet_flow_limit_count_total", &[("cpu", "0")], 5.0),
    ];
    let gauges: &[Expected] = &[
        ("node_netstat_Tcp_CurrEstab", &[], 9.0),
        ("node_sockstat_sockets_used", &[], 200.0),
        ("node_sockstat_TCP_tw", &[], 20.0),
        ("node_sockstat_TCP_mem_bytes", &[], 3.0 * page),
        ("node_sockstat_UDP_mem", &[], 4.0),
        ("node_sockstat_TCP6_inuse", &[], 5.0),
        ("node_sockstat_FRAG6_memory", &[], 0.0),
        ("node_softnet_backlog_len", &[("cpu", "0")], 6.0),
        ("node_entropy_available_bits", &[], 256.0),
        ("node_entropy_pool_size_bits", &[], 256.0),
        (
            "node_os_version",
            &[("id", "ubuntu"), ("id_like", "debian"), ("name", "Ubuntu")],
            22.04,
        ),
    ];
    for (list, kind) in [(counters, Kind::Counter), (gauges, Kind::Gauge)] {
        for (name, labels, expected) in list {
            let sample = snapshot
                .find(name, labels)
                .unwrap_or_else(|| panic!("no sample {name}{labels:?}"));
            assert_eq!(
                (sample.value, sample.kind),
                (*expected, kind),
                "{name}{labels:?}"
            );
        }
    }
    // No irq file in the fixtures (a kernel before 6.1): no series.
    assert_eq!(
        snapshot
            .series("node_pressure_irq_stalled_seconds_total")
            .count(),
        0
    );
    assert_eq!(snapshot.series("node_softnet_processed_total").count(), 2);
    let os = snapshot
        .series("node_os_info")
        .next()
        .expect("node_os_info");
    assert_eq!(os.label("pretty_name"), Some("Ubuntu 22.04.4 LTS"));
    assert_eq!(os.label("version_codename"), Some("jammy"));
    assert_eq!(os.label("variant"), None);
    // node_exporter's default netstat field pattern leaves most fields out.
    assert_eq!(snapshot.series("node_netstat_Tcp_MaxConn").count(), 0);
    assert_eq!(snapshot.series("node_netstat_Ip_InReceives").count(), 0);
    assert!(
        collector.errors().values().all(|n| *n == 0),
        "{:?}",
        collector.errors()
    );
}

#[tokio::test]
async fn the_node_exporter_full_sources_missing_or_garbled() {
    let host = FakeHost::new();
    // A kernel without PSI, without IPv6 and a root without os-release: no series, no error.
    for absent in [
        "pressure/cpu",
        "pressure/io",
        "pressure/memory",
        "net/snmp6",
        "net/sockstat6",
    ] {
        host.remove(absent);
    }
    std::fs::remove_file(host.config.root_fs.join("usr/lib/os-release")).expect("remove");
    let mut collector = Collector::new(host.config.clone()).expect("valid config");
    let snapshot = collector.collect().await;
    assert!(
        collector.errors().values().all(|n| *n == 0),
        "{:?}",
        collector.errors()
    );
    for family in [
        "node_pressure_",
        "node_os_",
        "node_sockstat_TCP6_",
        "node_netstat_Ip6_",
    ] {
        assert!(
            snapshot.samples.iter().all(|s| !s.name.starts_with(family)),
            "{family}"
        );
    }
    assert_eq!(value(&snapshot, "node_sockstat_TCP_inuse", &[]), 10.0);

    // Garbled or cut short: what parses is reported, the rest skipped and counted once per file's subsystem.
    let garbage = "this is not\na proc file: at all\n\u{0}\u{1}";
    for file in [
        "net/netstat",
        "net/sockstat",
        "net/softnet_stat",
        "sys/kernel/random/entropy_avail",
    ] {
        std::fs::write(host.config.proc_root.join(file), garbage).expect("write");
    }
    std::fs::write(
        host.config.proc_root.join("pressure/io"),
        "some avg10=0.20 avg60=0.10 avg300=0.05 total=45000000\nfull avg10=0.1",
    )
    .expect("write");
    let snapshot = collector.collect().await;
    let errors = collector.errors();
    for subsystem in [
        Subsystem::Netstat,
        Subsystem::Sockstat,
        Subsystem::Softnet,
        Subsystem::Entropy,
        Subsystem::Pressure,
    ] {
        assert_eq!(errors[&subsystem], 1, "{subsystem}");
    }
    assert_eq!(
        value(&snapshot, "node_pressure_io_waiting_seconds_total", &[]),
        45.0
    );
    assert_eq!(
        snapshot
            .series("node_pressure_io_stalled_seconds_total")
            .count(),
        0
    );
    // snmp is intact: its fields still come through beside the garbled netstat.
    assert_eq!(value(&snapshot, "node_netstat_Tcp_OutRsts", &[]), 70.0);
    assert_eq!(
        snapshot.series("node_netstat_TcpExt_ListenDrops").count(),
        0
    );
    assert_eq!(value(&snapshot, "node_entropy_pool_size_bits", &[]), 256.0);
    assert_eq!(snapshot.series("node_softnet_processed_total").count(), 0);
    assert_eq!(snapshot.series("node_cpu_seconds_total").count(), 16);
}
