//! Traces across the pipeline, as separate `gomon` processes exporting over OTLP/HTTP to a test receiver: the
//! agent's collection cycle (with a child per collector) and its publish span, the aggregator's processing span as
//! a child of the agent's across Kafka (tansu), and the remote write to VictoriaMetrics as its child; log lines
//! written inside a span carry its `trace_id` and `span_id`. The alerting service's request, store and Slack
//! delivery spans, and the alert's `jaeger_trace_id`, are checked against the same receiver.

use std::time::Duration;

use crate::support::{Gomon, postgres_database, wait_ready};
use gomon_testkit::otlp::{OtlpReceiver, ReceivedSpan};
use gomon_testkit::slack::FakeSlack;
use gomon_testkit::{Broker, VictoriaMetrics, eventually, free_port};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

const TOPIC: &str = "gomon.metrics";
const WAIT: Duration = Duration::from_secs(60);

fn by_id<'a>(spans: &'a [ReceivedSpan], id: &str) -> Option<&'a ReceivedSpan> {
    spans.iter().find(|span| span.span_id == id)
}

/// The JSON log lines of `log` whose `message` is `message`.
fn log_lines(log: &str, message: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_one_trace_from_collection_through_kafka_to_the_remote_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let receiver = OtlpReceiver::start().await;
    let broker = Broker::start();
    broker.create_topic(TOPIC, 1).await;
    let vm = VictoriaMetrics::start();

    let aggregator_port = free_port();
    // The aggregator finds the receiver through the standard OpenTelemetry variables ...
    let mut aggregator = Gomon::start(
        "aggregator",
        &dir,
        &[
            (
                "GOMON_AGGREGATOR__LISTEN",
                format!("127.0.0.1:{aggregator_port}"),
            ),
            ("GOMON_AGGREGATOR__KAFKA__BROKERS", broker.address()),
            ("GOMON_AGGREGATOR__KAFKA__TOPIC", TOPIC.to_owned()),
            ("GOMON_AGGREGATOR__REMOTE_WRITE__URL", vm.write_url()),
            (
                "GOMON_AGGREGATOR__REMOTE_WRITE__MAX_DELAY",
                "200ms".to_owned(),
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                receiver.endpoint().to_owned(),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
            ("GOMON_TRACING__EXPORT_INTERVAL", "200ms".to_owned()),
        ],
    );
    // ... the agent through its own configuration.
    let agent_port = free_port();
    let mut agent = Gomon::start(
        "agent",
        &dir,
        &[
            ("GOMON_AGENT__LISTEN", format!("127.0.0.1:{agent_port}")),
            ("GOMON_AGENT__HOSTNAME", "traced-host".to_owned()),
            ("GOMON_AGENT__INTERVAL", "1s".to_owned()),
            ("GOMON_AGENT__KAFKA__BROKERS", broker.address()),
            ("GOMON_AGENT__KAFKA__TOPIC", TOPIC.to_owned()),
            ("GOMON_TRACING__ENDPOINT", receiver.endpoint().to_owned()),
            ("GOMON_TRACING__EXPORT_INTERVAL", "200ms".to_owned()),
        ],
    );
    wait_ready(
        &mut aggregator,
        &format!("http://127.0.0.1:{aggregator_port}/health/live"),
    )
    .await;
    wait_ready(
        &mut agent,
        &format!("http://127.0.0.1:{agent_port}/health/ready"),
    )
    .await;

    // remote write <- process (aggregator) <- publish (agent) <- collect (agent, the root): one trace.
    let (write, process, publish, cycle) = receiver
        .wait_for(WAIT, "remote write span with its whole ancestry", |spans| {
            spans
                .iter()
                .filter(|span| span.name == "remote write")
                .find_map(|write| {
                    let process = by_id(spans, &write.parent_span_id)?;
                    let publish = by_id(spans, &process.parent_span_id)?;
                    let cycle = by_id(spans, &publish.parent_span_id)?;
                    Some((
                        write.clone(),
                        process.clone(),
                        publish.clone(),
                        cycle.clone(),
                    ))
                })
        })
        .await;
    for span in [&write, &process, &publish] {
        assert_eq!(span.trace_id, cycle.trace_id, "{span:#?}");
    }
    assert_eq!(cycle.name, "collect");
    assert_eq!(cycle.service, "gomon-agent");
    assert!(cycle.parent_span_id.is_empty(), "{cycle:#?}");
    assert_eq!(cycle.attribute("host"), Some("traced-host"));
    assert_eq!(publish.name, format!("publish {TOPIC}"));
    assert_eq!((publish.service.as_str(), publish.kind), ("gomon-agent", 4));
    assert_eq!(process.name, "process metrics");
    assert_eq!(
        (process.service.as_str(), process.kind),
        ("gomon-aggregator", 5)
    );
    assert_eq!(write.service, "gomon-aggregator");
    assert_eq!(write.kind, 3);
    assert_eq!(write.attribute("url.full"), Some(vm.write_url().as_str()));
    // The batch's correlation id and its latency from collection to acceptance.
    let correlation_id = process.attribute("correlation_id").expect("correlation_id");
    assert_eq!(cycle.attribute("correlation_id"), Some(correlation_id));
    assert_eq!(correlation_id.len(), 36, "a UUID: {correlation_id}");
    let latency: i64 = process
        .attribute("pipeline.latency_ms")
        .expect("pipeline.latency_ms")
        .parse()
        .expect("a number of milliseconds");
    assert!((0..60_000).contains(&latency), "latency {latency} ms");
    assert_eq!(process.attribute("host"), Some("traced-host"));
    assert!(
        process
            .attribute("samples")
            .and_then(|samples| samples.parse::<u64>().ok())
            .is_some_and(|samples| samples > 0)
    );
    // A child span per collector under the cycle.
    let collectors: std::collections::BTreeSet<String> = receiver
        .spans()
        .iter()
        .filter(|span| span.parent_span_id == cycle.span_id)
        .filter_map(|span| span.attribute("collector").map(str::to_owned))
        .collect();
    for collector in [
        "cpu",
        "memory",
        "system",
        "diskstats",
        "network",
        "filesystem",
    ] {
        assert!(
            collectors.contains(collector),
            "{collector}: {collectors:?}"
        );
    }
    assert!(
        receiver
            .content_types()
            .iter()
            .all(|content_type| content_type == "application/x-protobuf")
    );

    // A poison message sent under a trace of our own: its processing span joins that trace, fails, and the log
    // line that reports it carries the span's ids.
    let trace_id = "5b8efff798038103d269b633813fc60c";
    let parent_id = "eee19b7ec3c1b174";
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::to(TOPIC)
                .key("poison")
                .payload(b"not a batch".as_slice())
                .headers(OwnedHeaders::new().insert(Header {
                    key: "traceparent",
                    value: Some(&format!("00-{trace_id}-{parent_id}-01")),
                })),
            Duration::from_secs(10),
        )
        .await
        .expect("poison message published");
    let poisoned = receiver
        .wait_for(WAIT, "processing span of the poison message", |spans| {
            spans
                .iter()
                .find(|span| span.trace_id == trace_id && span.parent_span_id == parent_id)
                .cloned()
        })
        .await;
    assert_eq!(poisoned.name, "process metrics");
    assert_eq!(poisoned.status, 2, "error status: {poisoned:#?}");
    assert_eq!(poisoned.attribute("error"), Some("decode"));
    let lines = log_lines(&aggregator.log(), "message set aside: not a valid batch");
    assert_eq!(lines.len(), 1, "{}", aggregator.log_tail());
    assert_eq!(lines[0]["trace_id"], trace_id, "{}", lines[0]);
    assert_eq!(
        lines[0]["span_id"],
        poisoned.span_id.as_str(),
        "{}",
        lines[0]
    );
    // Lines written outside any span carry no ids.
    let started = log_lines(&aggregator.log(), "aggregator started");
    assert!(
        started.iter().all(|line| line.get("trace_id").is_none()),
        "{started:?}"
    );

    // The exporter counts what it sent, and dropped nothing.
    let metrics = format!("http://127.0.0.1:{aggregator_port}/metrics");
    assert!(metric(&metrics, "gomon_trace_spans_exported_total").await > 0.0);
    assert_eq!(
        metric(
            &metrics,
            "gomon_trace_spans_dropped_total{reason=\"queue_full\"}"
        )
        .await,
        0.0
    );
    assert!(agent.terminate().success());
    assert!(aggregator.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_carries_the_trace_that_created_it_through_the_store_to_slack() {
    let dir = tempfile::tempdir().expect("temp dir");
    let receiver = OtlpReceiver::start().await;
    let slack = FakeSlack::start().await;
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    let mut alerting = Gomon::start(
        "alerting",
        &dir,
        &[
            ("GOMON_ALERTING__LISTEN", format!("127.0.0.1:{port}")),
            ("GOMON_ALERTING__DATABASE__URL", postgres_database()),
            (
                "GOMON_ALERTING__SLACK__WEBHOOK_URL",
                slack.webhook_url.clone(),
            ),
            (
                "GOMON_ALERTING__SLACK__JAEGER_URL",
                "https://jaeger.example.com".to_owned(),
            ),
            ("GOMON_ALERTING__OUTBOX__POLL_INTERVAL", "100ms".to_owned()),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                format!("{}/v1/traces", receiver.endpoint()),
            ),
            ("GOMON_TRACING__EXPORT_INTERVAL", "200ms".to_owned()),
        ],
    );
    wait_ready(&mut alerting, &format!("{api}/health/ready")).await;
    let client = reqwest::Client::new();
    let post = |body: Value, traceparent: Option<&str>| {
        let mut request = client.post(format!("{api}/api/v1/alerts")).json(&body);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        async move {
            let response = request.send().await.expect("POST");
            assert_eq!(response.status(), 201);
            response.json::<Value>().await.expect("alert JSON")
        }
    };

    // Created within a caller's trace: the request span continues it, and the alert keeps its id.
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let caller = "b7ad6b7169203331";
    let alert = post(
        json!({"title": "Disk filling", "severity": "P2", "source": "traces-test"}),
        Some(&format!("00-{trace_id}-{caller}-01")),
    )
    .await;
    assert_eq!(alert["jaeger_trace_id"], trace_id, "{alert}");
    let request = receiver
        .wait_for(WAIT, "the POST's server span", |spans| {
            spans
                .iter()
                .find(|span| span.trace_id == trace_id && span.parent_span_id == caller)
                .cloned()
        })
        .await;
    assert_eq!(request.name, "POST /api/v1/alerts");
    assert_eq!(
        (request.service.as_str(), request.kind),
        ("gomon-alerting", 2)
    );
    assert_eq!(request.attribute("http.response.status_code"), Some("201"));
    // The store call and the Slack delivery are its children.
    let (store, delivery) = receiver
        .wait_for(WAIT, "store and Slack delivery spans", |spans| {
            let child = |name: &str| {
                spans
                    .iter()
                    .find(|span| {
                        span.parent_span_id == request.span_id && span.name.starts_with(name)
                    })
                    .cloned()
            };
            Some((child("store create")?, child("slack deliver")?))
        })
        .await;
    assert_eq!(store.attribute("db.system.name"), Some("postgresql"));
    assert_eq!(delivery.trace_id, trace_id);
    assert_eq!(delivery.attribute("outcome"), Some("sent"));
    assert_eq!(delivery.attribute("event"), Some("created"));
    // The Slack message links to that trace.
    let messages = eventually(Duration::from_secs(30), "the Slack message", || async {
        let received = slack.accepted();
        (!received.is_empty()).then_some(received)
    })
    .await;
    let link = format!("https://jaeger.example.com/trace/{trace_id}");
    assert!(
        messages[0].blocks.to_string().contains(&link),
        "{:?}",
        messages[0]
    );
    // The log line of the creation carries the ids of the request span.
    let created = log_lines(&alerting.log(), "alert created");
    assert_eq!(created.len(), 1, "{}", alerting.log_tail());
    assert_eq!(created[0]["trace_id"], trace_id);
    assert_eq!(created[0]["span_id"], request.span_id.as_str());

    // Without a caller's trace, the request starts one; the alert is given its id.
    let alert = post(
        json!({"title": "Memory pressure", "severity": "P3", "source": "traces-test"}),
        None,
    )
    .await;
    let own = alert["jaeger_trace_id"]
        .as_str()
        .expect("a trace id")
        .to_owned();
    assert_eq!(own.len(), 32, "{alert}");
    let root = receiver
        .wait_for(WAIT, "the second POST's span", |spans| {
            spans
                .iter()
                .find(|span| span.trace_id == own && span.name == "POST /api/v1/alerts")
                .cloned()
        })
        .await;
    assert!(root.parent_span_id.is_empty(), "{root:#?}");

    // A trace id given by the caller stands.
    let alert = post(
        json!({"title": "Given trace", "severity": "P4", "source": "traces-test", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}),
        None,
    )
    .await;
    assert_eq!(alert["jaeger_trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(alerting.terminate().success());
}

/// The value of `series` on the `/metrics` page at `url`.
async fn metric(url: &str, series: &str) -> f64 {
    gomon_testkit::metric(url, series)
        .await
        .unwrap_or_else(|| panic!("{series} on {url}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_or_is_gone_costs_spans_never_requests() {
    // One collector accepts connections and never answers; the other does not listen at all.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_endpoint = format!("http://{}", silent.local_addr().expect("address"));
    let held = std::thread::spawn(move || {
        let mut connections = Vec::new();
        for connection in silent.incoming().take(4) {
            connections.push(connection);
        }
        std::thread::sleep(Duration::from_secs(60));
    });
    let gone_endpoint = format!("http://127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().expect("temp dir");
    let mut services = Vec::new();
    for (name, endpoint) in [("silent", &silent_endpoint), ("gone", &gone_endpoint)] {
        let port = free_port();
        let data = dir.path().join(name);
        let mut alerting = Gomon::start(
            "alerting",
            &dir,
            &[
                ("GOMON_ALERTING__LISTEN", format!("127.0.0.1:{port}")),
                (
                    "GOMON_ALERTING__DATABASE__DATA_DIR",
                    data.display().to_string(),
                ),
                ("GOMON_TRACING__ENDPOINT", endpoint.clone()),
                ("GOMON_TRACING__QUEUE_SIZE", "8".to_owned()),
                ("GOMON_TRACING__MAX_BATCH", "4".to_owned()),
                ("GOMON_TRACING__EXPORT_INTERVAL", "50ms".to_owned()),
                ("GOMON_TRACING__EXPORT_TIMEOUT", "5s".to_owned()),
            ],
        );
        let api = format!("http://127.0.0.1:{port}");
        wait_ready(&mut alerting, &format!("{api}/health/ready")).await;
        services.push((name, alerting, api));
    }
    let client = reqwest::Client::new();
    for (name, _, api) in &services {
        // Every request is answered while the spans have nowhere to go.
        for number in 0..60 {
            let response = client
                .post(format!("{api}/api/v1/alerts"))
                .json(&json!({"title": format!("{name} {number}"), "severity": "P4", "source": "traces-test"}))
                .send()
                .await
                .expect("POST");
            assert_eq!(response.status(), 201, "{name} {number}");
        }
    }
    let (_, _, silent_api) = &services[0];
    let dropped = metric(
        &format!("{silent_api}/metrics"),
        "gomon_trace_spans_dropped_total{reason=\"queue_full\"}",
    )
    .await;
    assert!(
        dropped > 0.0,
        "spans beyond the queue are dropped and counted"
    );
    assert_eq!(
        metric(
            &format!("{silent_api}/metrics"),
            "gomon_trace_spans_exported_total"
        )
        .await,
        0.0
    );
    let (_, gone_service, gone_api) = &services[1];
    eventually(
        Duration::from_secs(20),
        "failed exports counted",
        || async {
            let failed = metric(
                &format!("{gone_api}/metrics"),
                "gomon_trace_spans_dropped_total{reason=\"export_failed\"}",
            )
            .await;
            (failed > 0.0).then_some(failed)
        },
    )
    .await;
    // Logged once, not per batch.
    let warnings = log_lines(&gone_service.log(), "cannot export spans; dropped");
    assert_eq!(warnings.len(), 1, "{}", gone_service.log_tail());
    for (name, service, _) in services {
        assert!(service.terminate().success(), "{name} stops");
    }
    drop(held);
}
