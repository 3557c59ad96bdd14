//! The aggregator between a real Kafka-protocol broker (tansu) and a real VictoriaMetrics (or Prometheus): what goes
//! in comes out exactly, outages of the receiver lose nothing, nor does a receiver refusing our credentials for a
//! while, poison messages are set aside, a group shares the partitions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::support::{
    Running, SAMPLES_PER_BATCH, batch, config, now_ms, producer, publish, publish_batch,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use gomon_proto::prometheus::WriteRequest;
use gomon_proto::prost::Message as _;
use gomon_testkit::{Broker, Prometheus, VictoriaMetrics, eventually};
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers as _;

const TOPIC: &str = "gomon.metrics";

/// The series VictoriaMetrics holds for `host`, by (name, mode), with their (timestamp, value) pairs.
type Stored = BTreeMap<(String, String), Vec<(i64, f64)>>;

async fn stored(vm: &VictoriaMetrics, hosts: &str) -> Stored {
    let mut stored = Stored::new();
    for series in vm.export(&format!("{{host=~\"{hosts}\"}}")).await {
        let key = (
            format!("{}/{}", series.labels["host"], series.labels["__name__"]),
            series.labels.get("mode").cloned().unwrap_or_default(),
        );
        let points = series.timestamps.into_iter().zip(series.values).collect();
        stored.insert(key, points);
    }
    stored
}

/// What [`batch`] stores for each (host, timestamp, seed).
fn expected(batches: &[(String, i64, f64)]) -> Stored {
    let mut expected = Stored::new();
    for (host, timestamp, seed) in batches {
        for (i, mode) in ["user", "system", "idle"].iter().enumerate() {
            expected
                .entry((format!("{host}/node_cpu_seconds_total"), (*mode).to_owned()))
                .or_default()
                .push((*timestamp, seed * 10.0 + i as f64));
        }
        expected
            .entry((format!("{host}/gomon_memory_used_percent"), String::new()))
            .or_default()
            .push((*timestamp, seed + 0.25));
    }
    for points in expected.values_mut() {
        points.sort_by_key(|(timestamp, _)| *timestamp);
    }
    expected
}

async fn wait_stored(vm: &VictoriaMetrics, hosts: &str, want: &Stored, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let now = stored(vm, hosts).await;
        if now == *want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "VictoriaMetrics holds\n{now:?}\ninstead of\n{want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn group() -> String {
    format!("test-{}", uuid::Uuid::new_v4())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_batches_arrive_in_victoria_metrics_exactly() {
    let broker = Broker::start();
    broker.create_topic(TOPIC, 3).await;
    let vm = VictoriaMetrics::start();
    let mut config = config(&broker, TOPIC, &group(), Some(vm.write_url()));
    config
        .external_labels
        .insert("cluster".to_owned(), "test-cluster".to_owned());
    // The batches are a minute old: keep their hosts on /federate.
    config.federate.stale_intervals = 1000;
    let aggregator = Running::start(config);
    let producer = producer(&broker);
    let start = now_ms() - 60_000;
    let mut sent = Vec::new();
    for round in 0..5 {
        for (index, host) in ["exact-a", "exact-b", "exact-c"].iter().enumerate() {
            let timestamp = start + round * 1000;
            // Values with short exact decimals: VictoriaMetrics keeps 12 significant digits.
            let seed = round as f64 * 4.0 + index as f64 + 0.5;
            publish_batch(&producer, TOPIC, &batch(host, timestamp, seed)).await;
            sent.push(((*host).to_owned(), timestamp, seed));
        }
    }
    let want = expected(&sent);
    wait_stored(&vm, "exact-.*", &want, Duration::from_secs(30)).await;

    // Labels: the agent's host, the external label, the default `job` and `instance`, nothing of the aggregator's own.
    let series = vm
        .export("node_cpu_seconds_total{host=\"exact-a\",mode=\"idle\"}")
        .await;
    assert_eq!(series.len(), 1);
    let labels: Vec<(&str, &str)> = series[0]
        .labels
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("__name__", "node_cpu_seconds_total"),
            ("cluster", "test-cluster"),
            ("cpu", "0"),
            ("host", "exact-a"),
            ("instance", "exact-a"),
            ("job", "node"),
            ("mode", "idle"),
        ]
    );
    let written = aggregator.metric("aggregator_samples_written_total").await;
    assert_eq!(written, (sent.len() * SAMPLES_PER_BATCH) as f64);
    assert_eq!(
        aggregator
            .metric("aggregator_pipeline_latency_seconds_count")
            .await,
        sent.len() as f64
    );
    assert_eq!(
        aggregator
            .metric("aggregator_messages_consumed_total")
            .await,
        sent.len() as f64
    );
    // The federate endpoint has the latest value of every series.
    let federate = reqwest::get(&aggregator.federate_url)
        .await
        .expect("federate")
        .text()
        .await
        .expect("body");
    assert!(
        federate
            .contains("gomon_memory_used_percent{cluster=\"test-cluster\",host=\"exact-c\",instance=\"exact-c\",job=\"node\"} 18.75"),
        "{federate}"
    );
    aggregator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_victoria_metrics_loses_nothing() {
    let broker = Broker::start();
    broker.create_topic(TOPIC, 3).await;
    let mut vm = VictoriaMetrics::start();
    let aggregator = Running::start(config(&broker, TOPIC, &group(), Some(vm.write_url())));
    let producer = producer(&broker);
    let start = now_ms() - 60_000;
    let mut sent = Vec::new();
    for round in 0..3 {
        let timestamp = start + round * 1000;
        publish_batch(&producer, TOPIC, &batch("outage", timestamp, round as f64)).await;
        sent.push(("outage".to_owned(), timestamp, round as f64));
    }
    wait_stored(&vm, "outage", &expected(&sent), Duration::from_secs(30)).await;

    vm.stop();
    for round in 3..8 {
        let timestamp = start + round * 1000;
        publish_batch(&producer, TOPIC, &batch("outage", timestamp, round as f64)).await;
        sent.push(("outage".to_owned(), timestamp, round as f64));
    }
    eventually(
        Duration::from_secs(20),
        "retries while VictoriaMetrics is down",
        || async {
            (aggregator.metric("aggregator_write_retries_total").await >= 2.0).then_some(())
        },
    )
    .await;
    vm.resume();
    wait_stored(&vm, "outage", &expected(&sent), Duration::from_secs(30)).await;
    assert_eq!(
        aggregator
            .metric("aggregator_samples_dropped_total{reason=\"permanent\"}")
            .await,
        0.0
    );
    aggregator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_set_aside_and_the_good_ones_after_it_arrive() {
    let broker = Broker::start();
    broker.create_topic(TOPIC, 1).await;
    broker.create_topic("gomon.metrics.dead", 1).await;
    let vm = VictoriaMetrics::start();
    let mut config = config(&broker, TOPIC, &group(), Some(vm.write_url()));
    config.kafka.dead_letter_topic = Some("gomon.metrics.dead".to_owned());
    let aggregator = Running::start(config);
    let producer = producer(&broker);
    let start = now_ms() - 60_000;
    publish_batch(&producer, TOPIC, &batch("poison", start, 1.0)).await;
    publish(&producer, TOPIC, "poison", b"\x08\xff\xff not a batch").await;
    let mut nameless = batch("poison", start + 500, 9.0);
    nameless.samples[0].name = "bad name".to_owned();
    publish_batch(&producer, TOPIC, &nameless).await;
    publish_batch(&producer, TOPIC, &batch("poison", start + 1000, 2.0)).await;
    let sent = [
        ("poison".to_owned(), start, 1.0),
        ("poison".to_owned(), start + 1000, 2.0),
    ];
    wait_stored(&vm, "poison", &expected(&sent), Duration::from_secs(30)).await;
    assert_eq!(
        aggregator
            .metric("aggregator_messages_invalid_total{reason=\"decode\"}")
            .await,
        1.0
    );
    assert_eq!(
        aggregator
            .metric("aggregator_messages_invalid_total{reason=\"invalid_name\"}")
            .await,
        1.0
    );

    // Both copies wait in the dead-letter topic, with where they came from.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .set("group.id", group())
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer
        .subscribe(&["gomon.metrics.dead"])
        .expect("subscribe");
    let mut reasons = Vec::new();
    while reasons.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
            .await
            .expect("a dead letter within 20 s")
            .expect("message");
        let headers = message.headers().expect("headers");
        let header = |key: &str| {
            headers
                .iter()
                .find(|header| header.key == key)
                .and_then(|header| header.value)
                .map(|value| String::from_utf8_lossy(value).into_owned())
                .unwrap_or_default()
        };
        assert_eq!(header("gomon-source-topic"), TOPIC);
        if header("gomon-invalid-reason") == "decode" {
            assert_eq!(message.payload(), Some(&b"\x08\xff\xff not a batch"[..]));
            assert_eq!(header("gomon-source-offset"), "1");
        }
        reasons.push(header("gomon-invalid-reason"));
    }
    reasons.sort();
    assert_eq!(reasons, ["decode", "invalid_name"]);
    aggregator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_aggregators_in_one_group_share_the_partitions() {
    let broker = Broker::start();
    broker.create_topic(TOPIC, 4).await;
    let vm = VictoriaMetrics::start();
    let group = group();
    let first = Running::start(config(&broker, TOPIC, &group, Some(vm.write_url())));
    let second = Running::start(config(&broker, TOPIC, &group, Some(vm.write_url())));
    let producer = producer(&broker);
    let start = now_ms() - 120_000;
    let hosts: Vec<String> = (0..12).map(|i| format!("shared-{i}")).collect();
    let mut sent = Vec::new();
    // Publish for a while, so that both members have joined and been given partitions.
    for round in 0..40 {
        for host in &hosts {
            let timestamp = start + round * 1000;
            publish_batch(&producer, TOPIC, &batch(host, timestamp, round as f64)).await;
            sent.push((host.clone(), timestamp, round as f64));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_stored(&vm, "shared-.*", &expected(&sent), Duration::from_secs(60)).await;
    let consumed = [
        first.metric("aggregator_messages_consumed_total").await,
        second.metric("aggregator_messages_consumed_total").await,
    ];
    assert!(
        consumed.iter().all(|count| *count > 0.0),
        "both members consumed: {consumed:?}"
    );
    assert!(consumed.iter().sum::<f64>() >= sent.len() as f64);
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_writes_are_dropped_counted_and_committed() {
    let broker = Broker::start();
    broker.create_topic(TOPIC, 1).await;
    let vm = VictoriaMetrics::start();
    // VictoriaMetrics answers 400 to a path it does not serve: a permanent refusal.
    let refused = format!("{}/api/v1/no-such-path", vm.url());
    let group = group();
    let aggregator = Running::start(config(&broker, TOPIC, &group, Some(refused)));
    let producer = producer(&broker);
    publish_batch(&producer, TOPIC, &batch("refused", now_ms(), 1.0)).await;
    eventually(
        Duration::from_secs(20),
        "the refused samples counted",
        || async {
            let dropped = aggregator
                .metric("aggregator_samples_dropped_total{reason=\"permanent\"}")
                .await;
            (dropped == SAMPLES_PER_BATCH as f64).then_some(())
        },
    )
    .await;
    eventually(Duration::from_secs(20), "the offset committed", || async {
        (aggregator
            .metric("aggregator_commits_total{outcome=\"ok\"}")
            .await
            >= 1.0)
            .then_some(())
    })
    .await;
    aggregator.stop().await;
    // A new member of the group starts after the refused message: nothing to consume.
    let again = Running::start(config(&broker, TOPIC, &group, Some(vm.write_url())));
    publish_batch(&producer, TOPIC, &batch("after-refusal", now_ms(), 2.0)).await;
    let want = expected(&[("after-refusal".to_owned(), 0, 2.0)]);
    let want_points = want.values().count();
    eventually(
        Duration::from_secs(30),
        "the next message written",
        || async { (stored(&vm, "after-refusal").await.len() == want_points).then_some(()) },
    )
    .await;
    assert_eq!(
        again.metric("aggregator_messages_consumed_total").await,
        1.0
    );
    assert!(stored(&vm, "refused").await.is_empty());
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_accepts_the_same_writes() {
    let broker = Broker::start();
    broker.create_topic(TOPIC, 1).await;
    let prometheus = Prometheus::start("").await;
    let aggregator = Running::start(config(
        &broker,
        TOPIC,
        &group(),
        Some(format!("{}/api/v1/write", prometheus.url())),
    ));
    let producer = producer(&broker);
    let timestamp = now_ms() - 5_000;
    publish_batch(&producer, TOPIC, &batch("to-prometheus", timestamp, 7.0)).await;
    let value = eventually(
        Duration::from_secs(30),
        "the sample in Prometheus",
        || async {
            let result = prometheus
                .query(
                    "gomon_memory_used_percent{host=\"to-prometheus\"}",
                    Some(timestamp),
                )
                .await;
            Some(result.first()?["value"][1].as_str()?.to_owned())
        },
    )
    .await;
    assert_eq!(value, "7.25");
    assert_eq!(
        aggregator
            .metric("aggregator_write_requests_total{outcome=\"permanent\"}")
            .await,
        0.0
    );
    aggregator.stop().await;
}

/// Prometheus federating the aggregator as its documentation says (`honor_labels`, `match[]`): the selected series
/// only, at their collection timestamps, with their types; a selector that does not parse is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_federates_what_match_selects() {
    let broker = Broker::start();
    broker.create_topic(TOPIC, 1).await;
    let mut config = config(&broker, TOPIC, &group(), None);
    config.federate.stale_intervals = 1000;
    let listen = config.listen;
    let aggregator = Running::start(config);
    let prometheus = Prometheus::start(&format!(
        "  - job_name: federate\n    honor_labels: true\n    metrics_path: /federate\n    params:\n      \
         'match[]': ['{{__name__=\"node_cpu_seconds_total\",mode!=\"system\"}}', 'gomon_memory_used_percent']\n    \
         static_configs: [{{targets: ['{listen}']}}]"
    ))
    .await;
    let producer = producer(&broker);
    let timestamp = now_ms() - 30_000;
    publish_batch(&producer, TOPIC, &batch("federated", timestamp, 3.0)).await;
    let at = timestamp + 1_000;
    let series = eventually(Duration::from_secs(30), "the federated series", || async {
        let result = prometheus.query("{host=\"federated\"}", Some(at)).await;
        (result.len() == 3).then_some(result)
    })
    .await;
    let mut seen: Vec<(String, String, String)> = series
        .iter()
        .map(|one| {
            (
                one["metric"]["__name__"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                one["metric"]["mode"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                one["value"][1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    seen.sort();
    let own =
        |name: &str, mode: &str, value: &str| (name.to_owned(), mode.to_owned(), value.to_owned());
    assert_eq!(
        seen,
        [
            own("gomon_memory_used_percent", "", "3.25"),
            own("node_cpu_seconds_total", "idle", "32"),
            own("node_cpu_seconds_total", "user", "30"),
        ]
    );
    // Stored at the collection time, not the scrape's: nothing before it, the sample right at it.
    let stamped = prometheus
        .query(
            "timestamp(gomon_memory_used_percent{host=\"federated\"})",
            Some(at),
        )
        .await;
    assert_eq!(
        stamped.first().and_then(|one| one["value"][1].as_str()),
        Some(format!("{}", timestamp as f64 / 1000.0).as_str())
    );
    assert!(
        prometheus
            .query(
                "gomon_memory_used_percent{host=\"federated\"}",
                Some(timestamp - 1_000)
            )
            .await
            .is_empty()
    );
    // Types from the batch's sample kinds.
    let text = reqwest::get(format!(
        "{}?match[]=%7Bhost%3D%22federated%22%7D",
        aggregator.federate_url
    ))
    .await
    .expect("federate")
    .text()
    .await
    .expect("body");
    assert!(
        text.contains("# TYPE node_cpu_seconds_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE gomon_memory_used_percent gauge\n"),
        "{text}"
    );
    let metadata: serde_json::Value = reqwest::get(format!(
        "{}/api/v1/targets/metadata?metric=node_cpu_seconds_total",
        prometheus.url()
    ))
    .await
    .expect("metadata")
    .json()
    .await
    .expect("metadata body");
    assert_eq!(metadata["data"][0]["type"], "counter", "{metadata}");
    for bad in [
        "%7Bhost%3D%22a%00%22%7D",
        "%7Bhost%3D",
        "%7Bhost%3D~%22.*%22%7D",
        "up%7Bhost%3D~%60%5Cw%7B50%7D%60%7D",
    ] {
        let answer = reqwest::get(format!("{}?match[]={bad}", aggregator.federate_url))
            .await
            .expect("federate");
        assert_eq!(answer.status().as_u16(), 400, "{bad}");
        let said = answer.text().await.expect("body");
        assert!(said.contains("match[]"), "{said}");
        if bad.contains("%60") {
            assert!(said.contains("invalid regular expression"), "{said}");
        }
    }
    aggregator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_far_larger_than_the_requests_in_flight_arrives_whole() {
    let broker = Broker::start();
    broker.create_topic(TOPIC, 4).await;
    let vm = VictoriaMetrics::start();
    let producer = producer(&broker);
    let start = now_ms() - 600_000;
    let mut sent = Vec::new();
    for round in 0..100 {
        for host in ["backlog-a", "backlog-b", "backlog-c", "backlog-d"] {
            let timestamp = start + round * 1000;
            publish_batch(&producer, TOPIC, &batch(host, timestamp, round as f64)).await;
            sent.push((host.to_owned(), timestamp, round as f64));
        }
    }
    // Requests of two batches, one in flight: the pipeline stops reading four hundred times over.
    let mut config = config(&broker, TOPIC, &group(), Some(vm.write_url()));
    if let Some(remote) = config.remote_write.as_mut() {
        remote.max_samples_per_request = 2 * SAMPLES_PER_BATCH;
        remote.concurrency = 1;
    }
    let aggregator = Running::start(config);
    wait_stored(&vm, "backlog-.*", &expected(&sent), Duration::from_secs(60)).await;
    assert_eq!(
        aggregator
            .metric("aggregator_messages_consumed_total")
            .await,
        sent.len() as f64
    );
    aggregator.stop().await;
}

/// A remote write receiver in front of VictoriaMetrics that answers 401 while `refusing` is set (a token rotated on
/// one side only), then passes the requests through, counting the samples VictoriaMetrics accepted.
#[derive(Clone)]
struct Gate {
    upstream: String,
    client: reqwest::Client,
    refusing: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
}

impl Gate {
    /// Starts a refusing gate in front of `upstream`; with its write URL.
    async fn start(upstream: String) -> (Gate, String) {
        let gate = Gate {
            upstream,
            client: reqwest::Client::new(),
            refusing: Arc::new(AtomicBool::new(true)),
            refused: Arc::new(AtomicU64::new(0)),
            accepted: Arc::new(AtomicU64::new(0)),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("gate listener");
        let url = format!(
            "http://{}/api/v1/write",
            listener.local_addr().expect("gate address")
        );
        let router = axum::Router::new()
            .route("/api/v1/write", axum::routing::post(pass))
            .with_state(gate.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (gate, url)
    }
}

async fn pass(State(gate): State<Gate>, body: Bytes) -> (StatusCode, String) {
    if gate.refusing.load(Ordering::SeqCst) {
        gate.refused.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::UNAUTHORIZED, "invalid bearer token".to_owned());
    }
    let samples: u64 = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .ok()
        .and_then(|raw| WriteRequest::decode(raw.as_slice()).ok())
        .map_or(0, |request| {
            request
                .timeseries
                .iter()
                .map(|series| series.samples.len() as u64)
                .sum()
        });
    let answer = gate
        .client
        .post(&gate.upstream)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await;
    match answer {
        Ok(answer) => {
            let status =
                StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            if status.is_success() {
                gate.accepted.fetch_add(samples, Ordering::SeqCst);
            }
            (status, answer.text().await.unwrap_or_default())
        }
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_refusing_our_credentials_blocks_until_it_accepts_and_loses_nothing() {
    let broker = Broker::start();
    broker.create_topic(TOPIC, 2).await;
    let vm = VictoriaMetrics::start();
    let (gate, url) = Gate::start(vm.write_url()).await;
    let aggregator = Running::start(config(&broker, TOPIC, &group(), Some(url)));
    let producer = producer(&broker);
    let start = now_ms() - 60_000;
    let mut sent = Vec::new();
    // Five seconds of batches while the receiver answers 401.
    for round in 0..10 {
        let timestamp = start + round * 1000;
        publish_batch(&producer, TOPIC, &batch("rotated", timestamp, round as f64)).await;
        sent.push(("rotated".to_owned(), timestamp, round as f64));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let blocked = "aggregator_remote_write_blocked{reason=\"unauthorized\"}";
    eventually(Duration::from_secs(20), "the blocked gauge", || async {
        (aggregator.metric(blocked).await == 1.0).then_some(())
    })
    .await;
    let ready = reqwest::get(&aggregator.ready_url).await.expect("ready");
    assert_eq!(ready.status(), 503);
    let body = ready.text().await.expect("ready body");
    assert!(body.contains("\"reason\":\"unauthorized\""), "{body}");
    assert_eq!(
        aggregator
            .metric("aggregator_remote_write_blocked{reason=\"forbidden\"}")
            .await,
        0.0
    );
    // Kept and retried: nothing dropped, nothing committed.
    assert!(gate.refused.load(Ordering::SeqCst) >= 3);
    assert!(
        aggregator
            .metric("aggregator_write_requests_total{outcome=\"blocked\"}")
            .await
            >= 3.0
    );
    assert_eq!(
        aggregator
            .metric("aggregator_samples_dropped_total{reason=\"permanent\"}")
            .await,
        0.0
    );
    assert_eq!(
        aggregator
            .metric("aggregator_commits_total{outcome=\"ok\"}")
            .await,
        0.0
    );

    // The token is right again: everything arrives, each sample accepted once.
    gate.refusing.store(false, Ordering::SeqCst);
    wait_stored(&vm, "rotated", &expected(&sent), Duration::from_secs(30)).await;
    let samples = (sent.len() * SAMPLES_PER_BATCH) as u64;
    eventually(Duration::from_secs(10), "every sample accepted", || async {
        (gate.accepted.load(Ordering::SeqCst) == samples).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "ready again", || async {
        let ready = reqwest::get(&aggregator.ready_url).await.ok()?;
        (ready.status() == 200 && aggregator.metric(blocked).await == 0.0).then_some(())
    })
    .await;
    eventually(Duration::from_secs(20), "the offsets committed", || async {
        (aggregator
            .metric("aggregator_commits_total{outcome=\"ok\"}")
            .await
            >= 1.0)
            .then_some(())
    })
    .await;
    assert_eq!(gate.accepted.load(Ordering::SeqCst), samples, "none twice");
    assert_eq!(
        aggregator.metric("aggregator_samples_written_total").await,
        samples as f64
    );
    aggregator.stop().await;
}

/// The first `count` messages of a dead-letter topic: their `gomon-*` headers and their payload.
async fn dead_letters(
    broker: &Broker,
    topic: &str,
    count: usize,
) -> Vec<(BTreeMap<String, String>, Vec<u8>)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .set("group.id", group())
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut letters = Vec::new();
    while letters.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
            .await
            .expect("a dead letter within 20 s")
            .expect("message");
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .filter_map(|header| {
                        Some((
                            header.key.to_owned(),
                            String::from_utf8_lossy(header.value?).into_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        letters.push((headers, message.payload().unwrap_or_default().to_vec()));
    }
    letters
}

async fn ready_status(metrics_url: &str) -> (u16, String) {
    let url = metrics_url.replace("/metrics", "/health/ready");
    let Ok(response) = reqwest::get(&url).await else {
        return (0, "not listening yet".to_owned());
    };
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// The dead-letter topic does not exist: readiness fails from the start; the copy of the first invalid message is
/// retried, what came before it is written and committed, consumption waits behind it and its offset is not
/// committed, even when stopped; the next aggregator reads it again, and once the topic is created its copy is made and
/// the batches after it arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_copy_that_fails_holds_the_partition_until_it_is_made() {
    const DEAD: &str = "gomon.metrics.dead-later";
    let broker = Broker::start();
    broker.create_topic(TOPIC, 1).await;
    let vm = VictoriaMetrics::start();
    let group = group();
    let mut config = config(&broker, TOPIC, &group, Some(vm.write_url()));
    config.kafka.dead_letter_topic = Some(DEAD.to_owned());
    let aggregator = Running::start(config.clone());
    let url = aggregator.metrics_url.clone();
    eventually(
        Duration::from_secs(20),
        "readiness failing for the missing dead-letter topic",
        || async {
            let (status, body) = ready_status(&url).await;
            (status == 503 && body.contains("\"dead_letter\":\"missing\"")).then_some(())
        },
    )
    .await;
    assert_eq!(
        aggregator.metric("aggregator_dead_letter_failing").await,
        1.0
    );

    let producer = producer(&broker);
    let start = now_ms() - 60_000;
    publish_batch(&producer, TOPIC, &batch("held", start, 1.0)).await;
    publish(&producer, TOPIC, "held", b"\x08\xff\xff not a batch").await;
    publish_batch(&producer, TOPIC, &batch("held", start + 1000, 2.0)).await;
    // The batch before it is written (and committed); the copy fails and is retried; the batch after it waits.
    wait_stored(
        &vm,
        "held",
        &expected(&[("held".to_owned(), start, 1.0)]),
        Duration::from_secs(30),
    )
    .await;
    eventually(Duration::from_secs(40), "a failed copy retried", || async {
        (aggregator
            .metric("aggregator_dead_letter_messages_total{outcome=\"error\"}")
            .await
            >= 2.0)
            .then_some(())
    })
    .await;
    assert_eq!(
        stored(&vm, "held").await,
        expected(&[("held".to_owned(), start, 1.0)]),
        "nothing after the message that cannot be set aside"
    );
    let (status, body) = ready_status(&url).await;
    assert_eq!(status, 503, "{body}");
    aggregator.stop().await;

    // Stopped while retrying: the group's position is the invalid message, not past it.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .set("group.id", &group)
        .create()
        .expect("consumer");
    let mut partitions = rdkafka::TopicPartitionList::new();
    partitions.add_partition(TOPIC, 0);
    let committed = consumer
        .committed_offsets(partitions, Duration::from_secs(10))
        .expect("committed offsets");
    let offset = committed
        .find_partition(TOPIC, 0)
        .map(|element| element.offset());
    assert_eq!(
        offset,
        Some(rdkafka::Offset::Offset(1)),
        "the batch before it committed, not the invalid message at offset 1"
    );
    drop(consumer);

    // The next aggregator reads it again and retries its copy; once the topic is created, the copy is made and
    // consumption goes on, without a restart.
    let aggregator = Running::start(config);
    eventually(
        Duration::from_secs(30),
        "the copy retried again",
        || async {
            (aggregator
                .metric("aggregator_dead_letter_messages_total{outcome=\"error\"}")
                .await
                >= 1.0)
                .then_some(())
        },
    )
    .await;
    broker.create_topic(DEAD, 1).await;
    let sent = [
        ("held".to_owned(), start, 1.0),
        ("held".to_owned(), start + 1000, 2.0),
    ];
    wait_stored(&vm, "held", &expected(&sent), Duration::from_secs(40)).await;
    let letters = dead_letters(&broker, DEAD, 1).await;
    assert_eq!(letters[0].0["gomon-invalid-reason"], "decode");
    assert_eq!(letters[0].0["gomon-source-offset"], "1");
    assert_eq!(letters[0].1, b"\x08\xff\xff not a batch");
    let url = aggregator.metrics_url.clone();
    eventually(Duration::from_secs(20), "ready again", || async {
        (ready_status(&url).await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(
        aggregator.metric("aggregator_dead_letter_failing").await,
        0.0
    );
    aggregator.stop().await;
}
