//! Publishes synthetic agent batches to Kafka, for the end-to-end benchmark (`scripts/bench-aggregator.sh`).
//!
//! `cargo run --release -p gomon-aggregator --example load -- BROKERS TOPIC HOSTS SAMPLES_PER_BATCH BATCHES RATE`
//!
//! `RATE` is batches per second (0: as fast as the broker takes them). Each batch is stamped with the time it is
//! published, so the aggregator's `aggregator_pipeline_latency_seconds` measures publish-to-acceptance.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gomon_proto::MetricBatch;
use gomon_proto::metrics::v1::{Label, Sample};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

fn batch(host: &str, timestamp_ms: i64, samples: usize, sequence: u64) -> MetricBatch {
    let label = |name: &str, value: String| Label {
        name: name.to_owned(),
        value,
    };
    MetricBatch {
        host: host.to_owned(),
        timestamp_ms,
        agent_version: "load".to_owned(),
        correlation_id: format!("{host}-{sequence}"),
        sequence,
        samples: (0..samples)
            .map(|i| Sample {
                name: "node_cpu_seconds_total".to_owned(),
                labels: vec![
                    label("cpu", (i / 8).to_string()),
                    label("host", host.to_owned()),
                    label("mode", format!("mode{}", i % 8)),
                ],
                value: sequence as f64 + i as f64,
                kind: 2,
            })
            .collect(),
        ..MetricBatch::default()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [brokers, topic, hosts, samples, batches, rate] = args.as_slice() else {
        anyhow::bail!("usage: load BROKERS TOPIC HOSTS SAMPLES_PER_BATCH BATCHES RATE");
    };
    let hosts: usize = hosts.parse()?;
    let samples: usize = samples.parse()?;
    let batches: u64 = batches.parse()?;
    let rate: f64 = rate.parse()?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .create()?;
    let started = Instant::now();
    let mut pending = Vec::new();
    for sequence in 0..batches {
        if rate > 0.0 {
            let due = started + Duration::from_secs_f64(sequence as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let host = format!("load-{}", sequence as usize % hosts);
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
        let payload = gomon_proto::encode_batch(&batch(&host, now_ms, samples, sequence));
        let producer = producer.clone();
        let topic = topic.clone();
        pending.push(tokio::spawn(async move {
            producer
                .send(
                    FutureRecord::to(&topic).key(&host).payload(&payload),
                    Duration::from_secs(30),
                )
                .await
                .map(|_| ())
                .map_err(|(error, _)| error)
        }));
        if pending.len() >= 1000 {
            for sent in pending.drain(..) {
                sent.await??;
            }
        }
    }
    for sent in pending {
        sent.await??;
    }
    eprintln!(
        "published {batches} batches of {samples} samples in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
