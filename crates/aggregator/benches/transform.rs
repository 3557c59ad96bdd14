//! Limits + decode + transform + encode throughput: one agent batch (as a real host produces) in, one remote write body out;
//! and the cost of recording the series for `/federate`.
//!
//! `cargo bench -p gomon-aggregator --bench transform`; throughput is reported in samples per second.

#![allow(missing_docs)] // criterion_group! makes an undocumented public function.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gomon_aggregator::sinks::remote_write;
use gomon_aggregator::transform;
use gomon_proto::MetricBatch;
use gomon_proto::metrics::v1::{Label, Sample};

/// A batch shaped like an agent's on a 16-core host: CPU modes per core, filesystems, disks, interfaces.
fn host_batch(host: &str) -> MetricBatch {
    let mut samples = Vec::new();
    let mut push = |name: &str, labels: &[(&str, String)], value: f64| {
        let mut labels: Vec<Label> = labels
            .iter()
            .map(|(name, value)| Label {
                name: (*name).to_owned(),
                value: value.clone(),
            })
            .chain(std::iter::once(Label {
                name: "host".to_owned(),
                value: host.to_owned(),
            }))
            .collect();
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
            kind: 2,
        });
    };
    for cpu in 0..16 {
        for mode in [
            "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
        ] {
            push(
                "node_cpu_seconds_total",
                &[("cpu", cpu.to_string()), ("mode", mode.to_owned())],
                12345.67,
            );
        }
    }
    for mount in ["/", "/var/lib/kubelet", "/data"] {
        for name in [
            "node_filesystem_size_bytes",
            "node_filesystem_avail_bytes",
            "node_filesystem_free_bytes",
        ] {
            push(
                name,
                &[
                    ("device", "/dev/nvme0n1p1".to_owned()),
                    ("fstype", "ext4".to_owned()),
                    ("mountpoint", mount.to_owned()),
                ],
                1.5e11,
            );
        }
    }
    for device in ["eth0", "eth1", "cni0"] {
        for name in [
            "node_network_receive_bytes_total",
            "node_network_transmit_bytes_total",
            "node_network_receive_packets_total",
        ] {
            push(name, &[("device", device.to_owned())], 9.87e9);
        }
    }
    MetricBatch {
        host: host.to_owned(),
        timestamp_ms: 1_764_000_000_000,
        agent_version: "0.1.0".to_owned(),
        correlation_id: "3f2b".to_owned(),
        sequence: 1,
        samples,
        ..MetricBatch::default()
    }
}

fn pipeline(c: &mut Criterion) {
    // Ten hosts' batches per request, as the pipeline gathers them.
    let payloads: Vec<Vec<u8>> = (0..10)
        .map(|i| gomon_proto::encode_batch(&host_batch(&format!("node-{i}"))))
        .collect();
    let samples: usize = payloads
        .iter()
        .map(|payload| {
            transform::decode(payload)
                .map(|b| b.samples.len())
                .unwrap_or(0)
        })
        .sum();
    // An external label, and the default `job` and `instance`.
    let external = transform::AddedLabels {
        external: vec![("cluster".to_owned(), "prod".to_owned())],
        job: Some("node".to_owned()),
        instance: Some(gomon_aggregator::config::INSTANCE_HOST.to_owned()),
    };
    // The pipeline's path: the limits checked on the wire, then decoded.
    let limits = gomon_aggregator::config::LimitsConfig::default();
    let now_ms = 1_764_000_000_000;
    let mut group = c.benchmark_group("aggregator");
    group.throughput(Throughput::Elements(samples as u64));
    group.bench_function("decode_transform_encode", |b| {
        b.iter(|| {
            let mut series = Vec::with_capacity(samples);
            for payload in &payloads {
                let batch =
                    transform::decode_within(payload, &limits, now_ms).expect("valid batch");
                transform::append_series(batch, &external, &mut series).expect("valid names");
            }
            remote_write::encode(series)
        })
    });
    // The cost of the limits alone: decoding with and without them.
    group.bench_function("decode_only", |b| {
        b.iter(|| {
            for payload in &payloads {
                std::hint::black_box(transform::decode(payload).expect("valid batch"));
            }
        })
    });
    group.bench_function("decode_within_only", |b| {
        b.iter(|| {
            for payload in &payloads {
                std::hint::black_box(
                    transform::decode_within(payload, &limits, now_ms).expect("valid batch"),
                );
            }
        })
    });
    // The `/federate` store: the same ten hosts' series recorded again, as every batch after a host's first does.
    let batches: Vec<(
        String,
        i64,
        Vec<gomon_proto::prometheus::TimeSeries>,
        Vec<i32>,
    )> = payloads
        .iter()
        .map(|payload| {
            let batch = transform::decode(payload).expect("valid batch");
            let (host, timestamp_ms) = (batch.host.clone(), batch.timestamp_ms);
            let kinds = batch.samples.iter().map(|sample| sample.kind).collect();
            let mut series = Vec::new();
            transform::append_series(batch, &external, &mut series).expect("valid names");
            (host, timestamp_ms, series, kinds)
        })
        .collect();
    let latest = gomon_aggregator::sinks::federate::Latest::new(5);
    group.bench_function("federate_update", |b| {
        b.iter(|| {
            for (host, timestamp_ms, series, kinds) in &batches {
                latest.update(host, *timestamp_ms, series, kinds);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
