//! `gomon aggregator` as a process between a real Kafka-protocol broker and a real VictoriaMetrics: killed with
//! SIGKILL in mid-stream and started again, it loses no sample (it replays from its last commit, and
//! VictoriaMetrics' deduplication absorbs what is written twice).

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gomon_proto::MetricBatch;
use gomon_proto::metrics::v1::{Label, Sample};
use gomon_testkit::{Broker, VictoriaMetrics, eventually, free_port};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const TOPIC: &str = "gomon.metrics";

fn aggregator(broker: &Broker, vm: &VictoriaMetrics, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gomon"))
        .arg("aggregator")
        .env("GOMON_AGGREGATOR__LISTEN", format!("127.0.0.1:{port}"))
        .env("GOMON_AGGREGATOR__KAFKA__BROKERS", broker.address())
        .env("GOMON_AGGREGATOR__KAFKA__GROUP_ID", "sigkill-test")
        .env("GOMON_AGGREGATOR__KAFKA__SESSION_TIMEOUT", "6s")
        .env("GOMON_AGGREGATOR__REMOTE_WRITE__URL", vm.write_url())
        .env("GOMON_AGGREGATOR__REMOTE_WRITE__MAX_DELAY", "200ms")
        .env("GOMON_LOG", "info")
        .stdout(Stdio::null())
        .spawn()
        .expect("gomon aggregator")
}

fn batch(sequence: u64, timestamp_ms: i64) -> MetricBatch {
    MetricBatch {
        host: "sigkill-host".to_owned(),
        timestamp_ms,
        sequence,
        samples: vec![Sample {
            name: "gomon_cpu_usage_percent".to_owned(),
            labels: vec![Label {
                name: "host".to_owned(),
                value: "sigkill-host".to_owned(),
            }],
            value: sequence as f64,
            kind: 1,
        }],
        ..MetricBatch::default()
    }
}

async fn stored_timestamps(vm: &VictoriaMetrics) -> BTreeSet<i64> {
    vm.export("gomon_cpu_usage_percent{host=\"sigkill-host\"}")
        .await
        .into_iter()
        .flat_map(|series| series.timestamps)
        .collect()
}

async fn metric(port: u16, name: &str) -> f64 {
    gomon_testkit::metric(&format!("http://127.0.0.1:{port}/metrics"), name)
        .await
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_in_mid_stream_and_restarted_it_loses_no_sample() {
    let broker = Broker::start();
    broker.create_topic(TOPIC, 2).await;
    let vm = VictoriaMetrics::start();
    let port = free_port();
    let mut first = aggregator(&broker, &vm, port);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .create()
        .expect("producer");
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        - 300_000;
    let publisher = tokio::spawn(async move {
        let mut sent = BTreeSet::new();
        for sequence in 0..150u64 {
            let timestamp = start + sequence as i64 * 1000;
            let payload = gomon_proto::encode_batch(&batch(sequence, timestamp));
            producer
                .send(
                    FutureRecord::to(TOPIC)
                        .key("sigkill-host")
                        .payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .expect("published");
            sent.insert(timestamp);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sent
    });
    // Once it has written some, kill it without warning.
    eventually(
        Duration::from_secs(30),
        "the first samples written",
        || async { (metric(port, "aggregator_samples_written_total").await >= 20.0).then_some(()) },
    )
    .await;
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let mut second = aggregator(&broker, &vm, port);
    let sent = publisher.await.expect("publisher");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stored = stored_timestamps(&vm).await;
        if stored == sent {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} samples stored; missing {:?}",
            stored.len(),
            sent.len(),
            sent.difference(&stored).take(10).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(
        second.wait().expect("exit").success(),
        "clean stop on SIGTERM"
    );
}
