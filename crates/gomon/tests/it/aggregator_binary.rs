//! `gomon aggregator` as a process between a real Kafka-protocol broker and a real VictoriaMetrics: killed with
//! SIGKILL in mid-stream and started again, it loses no sample (it replays from its last commit, and
//! VictoriaMetrics' deduplication absorbs what is written twice); while VictoriaMetrics is down it uses next to no
//! CPU, and SIGTERM stops it within its shutdown timeout without committing what was not written; hostile messages
//! of about 1 MB cost it little memory and are set aside.

use crate::support;
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gomon_proto::MetricBatch;
use gomon_proto::metrics::v1::{Label, Sample};
use gomon_testkit::{Broker, VictoriaMetrics, eventually, free_port};
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Headers as _;
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

fn batch(host: &str, sequence: u64, timestamp_ms: i64) -> MetricBatch {
    MetricBatch {
        host: host.to_owned(),
        timestamp_ms,
        sequence,
        samples: vec![Sample {
            name: "gomon_cpu_usage_percent".to_owned(),
            labels: vec![Label {
                name: "host".to_owned(),
                value: host.to_owned(),
            }],
            value: sequence as f64,
            kind: 1,
        }],
        ..MetricBatch::default()
    }
}

async fn stored_timestamps(vm: &VictoriaMetrics, host: &str) -> BTreeSet<i64> {
    vm.export(&format!("gomon_cpu_usage_percent{{host=\"{host}\"}}"))
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
    let producer = broker.producer();
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        - 300_000;
    let publisher = tokio::spawn(async move {
        let mut sent = BTreeSet::new();
        for sequence in 0..150u64 {
            let timestamp = start + sequence as i64 * 1000;
            let payload = gomon_proto::encode_batch(&batch("sigkill-host", sequence, timestamp));
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
        let stored = stored_timestamps(&vm, "sigkill-host").await;
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

/// `gomon aggregator` of `group` writing to `write_url`, with short delays, backoff and shutdown timeout (2 s).
fn aggregator_role(
    dir: &tempfile::TempDir,
    broker: &Broker,
    write_url: String,
    group: &str,
    port: u16,
) -> support::Gomon {
    support::Gomon::start(
        "aggregator",
        dir,
        &[
            ("GOMON_AGGREGATOR__LISTEN", format!("127.0.0.1:{port}")),
            ("GOMON_AGGREGATOR__KAFKA__BROKERS", broker.address()),
            ("GOMON_AGGREGATOR__KAFKA__GROUP_ID", group.to_owned()),
            ("GOMON_AGGREGATOR__KAFKA__SESSION_TIMEOUT", "6s".to_owned()),
            ("GOMON_AGGREGATOR__REMOTE_WRITE__URL", write_url),
            (
                "GOMON_AGGREGATOR__REMOTE_WRITE__MAX_DELAY",
                "200ms".to_owned(),
            ),
            (
                "GOMON_AGGREGATOR__REMOTE_WRITE__MIN_BACKOFF",
                "100ms".to_owned(),
            ),
            (
                "GOMON_AGGREGATOR__REMOTE_WRITE__MAX_BACKOFF",
                "1s".to_owned(),
            ),
            ("GOMON_AGGREGATOR__SHUTDOWN_TIMEOUT", "2s".to_owned()),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_outage_costs_no_cpu_and_sigterm_stops_in_time_leaving_the_rest_to_replay() {
    const HOST: &str = "outage-host";
    let broker = Broker::start();
    broker.create_topic(TOPIC, 2).await;
    // VictoriaMetrics is down from the start: its port refuses connections.
    let mut vm = VictoriaMetrics::start();
    vm.stop();
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut first = aggregator_role(&dir, &broker, vm.write_url(), "outage-test", port);
    let producer = broker.producer();
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        - 300_000;
    // A batch every 200 ms throughout the outage: the open request is always overdue.
    let publisher = tokio::spawn(async move {
        let mut sent = BTreeSet::new();
        for sequence in 0..90u64 {
            let timestamp = start + sequence as i64 * 1000;
            let payload = gomon_proto::encode_batch(&batch(HOST, sequence, timestamp));
            producer
                .send(
                    FutureRecord::to(TOPIC).key(HOST).payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .expect("published");
            sent.insert(timestamp);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sent
    });
    // Both requests in flight are retrying and the next one waits for a slot: the state that used to spin.
    eventually(Duration::from_secs(30), "two requests retrying", || async {
        let in_flight = metric(port, "aggregator_writes_in_flight").await;
        let retries = metric(port, "aggregator_write_retries_total").await;
        (in_flight == 2.0 && retries >= 4.0).then_some(())
    })
    .await;
    first.assert_running();
    let cpu = first.cpu_seconds();
    let wall = Instant::now();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let share = (first.cpu_seconds() - cpu) / wall.elapsed().as_secs_f64();
    println!("CPU during the outage: {:.2}% of a core", share * 100.0);
    assert!(
        share < 0.02,
        "{:.1}% of a core during the outage\n{}",
        share * 100.0,
        first.log_tail()
    );
    let sent = publisher.await.expect("publisher");

    // SIGTERM with the receiver still down: out within shutdown_timeout (2 s) and a second, having committed
    // nothing it did not write.
    let log = dir.path().join("aggregator.log");
    let signalled = Instant::now();
    let status = first.terminate();
    let took = signalled.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    println!("stopped {took:?} after SIGTERM");
    assert!(status.success(), "{status}\n{text}");
    assert!(
        took < Duration::from_secs(3),
        "stopped {took:?} after SIGTERM\n{text}"
    );
    assert!(text.contains("not committed"), "{text}");

    // The receiver is back: the next member of the group writes every sample.
    vm.resume();
    let again_dir = tempfile::tempdir().expect("temp dir");
    let again = aggregator_role(&again_dir, &broker, vm.write_url(), "outage-test", port);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored = stored_timestamps(&vm, HOST).await;
        if stored == sent {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} samples stored after the restart; missing {:?}\n{}",
            stored.len(),
            sent.len(),
            sent.difference(&stored).take(10).collect::<Vec<_>>(),
            again.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(again.terminate().success(), "clean stop on SIGTERM");
}

/// `VmHWM` (peak resident set) of process `pid`, in bytes.
fn peak_resident(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|value| value.parse().ok())
        .expect("VmHWM in kB");
    kib * 1024
}

/// A batch of `samples` tiny samples (a one-letter name, no label), as small on the wire as a sample gets.
fn tiny_batch(host: String, timestamp_ms: i64, samples: usize) -> MetricBatch {
    MetricBatch {
        host,
        timestamp_ms,
        samples: vec![
            Sample {
                name: "x".to_owned(),
                labels: Vec::new(),
                value: 1.0,
                kind: 1,
            };
            samples
        ],
        ..MetricBatch::default()
    }
}

/// Messages of about 1 MB shaped to blow up once expanded into series (a 40 KB `host` shared by 55,000 samples,
/// 60,000 samples, a sample with 190,000 labels, a 900 KB label value), and one from the future: each costs the real process little
/// memory, is counted by reason and lands in the dead-letter topic, and the batches after them arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_cost_little_memory_and_are_set_aside() {
    const DEAD: &str = "gomon.metrics.dead";
    let broker = Broker::start();
    broker.create_topic(TOPIC, 1).await;
    broker.create_topic(DEAD, 1).await;
    let vm = VictoriaMetrics::start();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gomon"))
        .arg("aggregator")
        .env("GOMON_AGGREGATOR__LISTEN", format!("127.0.0.1:{port}"))
        .env("GOMON_AGGREGATOR__KAFKA__BROKERS", broker.address())
        .env("GOMON_AGGREGATOR__KAFKA__GROUP_ID", "hostile-test")
        .env("GOMON_AGGREGATOR__KAFKA__DEAD_LETTER_TOPIC", DEAD)
        .env("GOMON_AGGREGATOR__REMOTE_WRITE__URL", vm.write_url())
        .env("GOMON_AGGREGATOR__REMOTE_WRITE__MAX_DELAY", "200ms")
        .env("GOMON_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("gomon aggregator");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .set("message.max.bytes", "2000000")
        .create()
        .expect("producer");
    let send = |payload: Vec<u8>| {
        let producer = producer.clone();
        async move {
            producer
                .send(
                    FutureRecord::<str, [u8]>::to(TOPIC)
                        .key("hostile")
                        .payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .expect("published");
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    // Warm up with a valid batch, so that the baseline holds what any message costs.
    send(gomon_proto::encode_batch(&batch(
        "sigkill-host",
        0,
        now - 10_000,
    )))
    .await;
    eventually(
        Duration::from_secs(30),
        "the first batch stored",
        || async { (stored_timestamps(&vm, "sigkill-host").await.len() == 1).then_some(()) },
    )
    .await;
    let before = peak_resident(child.id());

    let long_host = tiny_batch("h".repeat(40_000), now, 55_000);
    let many = tiny_batch("many-samples".to_owned(), now, 60_000);
    let mut wide = tiny_batch("wide".to_owned(), now, 1);
    wide.samples[0].labels = vec![
        Label {
            name: "a".to_owned(),
            value: String::new(),
        };
        190_000
    ];
    let mut long_value = tiny_batch("long-value".to_owned(), now, 1);
    long_value.samples[0].labels = vec![Label {
        name: "a".to_owned(),
        value: "v".repeat(900_000),
    }];
    let future = batch("sigkill-host", 1, now + 3_600_000);
    let hostile = [
        (long_host, "host_too_long"),
        (many, "too_many_samples"),
        (wide, "too_many_labels"),
        (long_value, "label_too_long"),
        (future, "future_timestamp"),
    ];
    for (batch, _) in &hostile {
        let payload = gomon_proto::encode_batch(batch);
        assert!(payload.len() < 1_000_000, "{} bytes", payload.len());
        send(payload).await;
    }
    let mut sent: BTreeSet<i64> = [now - 10_000].into();
    for sequence in 2..6u64 {
        let timestamp = now - 5_000 + sequence as i64;
        send(gomon_proto::encode_batch(&batch(
            "sigkill-host",
            sequence,
            timestamp,
        )))
        .await;
        sent.insert(timestamp);
    }
    eventually(
        Duration::from_secs(30),
        "the batches after the hostile ones stored",
        || async { (stored_timestamps(&vm, "sigkill-host").await == sent).then_some(()) },
    )
    .await;
    let grown = peak_resident(child.id()).saturating_sub(before);
    assert!(
        grown < 50 << 20,
        "hostile messages grew the peak resident set by {} MiB",
        grown >> 20
    );
    for (_, reason) in &hostile {
        assert_eq!(
            metric(
                port,
                &format!("aggregator_messages_invalid_total{{reason=\"{reason}\"}}")
            )
            .await,
            1.0,
            "{reason}"
        );
    }

    // Each is in the dead-letter topic with its reason, whole.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .set("group.id", "hostile-test-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[DEAD]).expect("subscribe");
    let mut letters = Vec::new();
    while letters.len() < hostile.len() {
        let message = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
            .await
            .expect("a dead letter within 20 s")
            .expect("message");
        let reason = message
            .headers()
            .and_then(|headers| {
                headers
                    .iter()
                    .find(|header| header.key == "gomon-invalid-reason")
                    .and_then(|header| header.value)
            })
            .map(|value| String::from_utf8_lossy(value).into_owned())
            .unwrap_or_default();
        letters.push((reason, message.payload().map_or(0, <[u8]>::len)));
    }
    for (batch, reason) in &hostile {
        let size = gomon_proto::encode_batch(batch).len();
        assert!(
            letters.contains(&((*reason).to_owned(), size)),
            "{reason} ({size} bytes) not among {letters:?}"
        );
    }
    eprintln!(
        "peak resident set: {} MiB before the hostile messages, grown by {} KiB",
        before >> 20,
        grown >> 10
    );

    // For scale: the largest valid batch of that size (45,000 distinct series of a 253-byte host) is written, and
    // costs what its series cost (requests, /federate), still far within the deployment's 512 MiB.
    let written = metric(port, "aggregator_samples_written_total").await;
    let mut largest = tiny_batch("v".repeat(253), now, 45_000);
    for (i, sample) in largest.samples.iter_mut().enumerate() {
        sample.name = format!("x{i}");
    }
    let payload = gomon_proto::encode_batch(&largest);
    assert!(payload.len() < 1_000_000, "{} bytes", payload.len());
    let before_valid = peak_resident(child.id());
    send(payload).await;
    eventually(
        Duration::from_secs(30),
        "the largest valid batch written",
        || async {
            (metric(port, "aggregator_samples_written_total").await >= written + 45_000.0)
                .then_some(())
        },
    )
    .await;
    let grown_valid = peak_resident(child.id()).saturating_sub(before_valid);
    eprintln!(
        "the largest valid ~1 MB batch grew the peak resident set by {} MiB",
        grown_valid >> 20
    );
    assert!(grown_valid < 256 << 20, "{} MiB", grown_valid >> 20);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(
        child.wait().expect("exit").success(),
        "clean stop on SIGTERM"
    );
}
