//! The platform end to end, as separate `gomon` processes against the real systems: `gomon agent` (1 s interval)
//! publishes this machine's metrics to a Kafka-protocol broker (tansu), `gomon aggregator` consumes them and
//! remote-writes them to VictoriaMetrics, where PromQL finds this machine's CPU, memory, filesystem and network
//! series under the agent's `host` label; and `gomon alerting` on PostgreSQL takes an alert through its API from
//! creation to resolution while a Slack-speaking test server receives the three notifications in order.
//!
//! Every part is required: a missing tansu, VictoriaMetrics, PostgreSQL (`TEST_POSTGRES_URL`, set by
//! `scripts/test.sh`) or `psql` fails the test with what to install.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::support::{Gomon, postgres_database, wait_ready};
use gomon_testkit::slack::{FakeSlack, Received};
use gomon_testkit::{Broker, VictoriaMetrics, eventually, free_port};
use serde_json::{Value, json};

const TOPIC: &str = "gomon.metrics";
const HOST: &str = "e2e-test-host";

/// One series of a PromQL instant query: its labels and value.
type Series = (BTreeMap<String, String>, f64);

/// Runs an instant PromQL query against VictoriaMetrics (after a forced flush of what it accepted).
async fn query(vm: &VictoriaMetrics, promql: &str) -> Vec<Series> {
    let client = reqwest::Client::new();
    let _ = client
        .get(format!("{}/internal/force_flush", vm.url()))
        .send()
        .await;
    let body: Value = client
        .get(format!("{}/api/v1/query", vm.url()))
        .query(&[("query", promql)])
        .send()
        .await
        .expect("query")
        .error_for_status()
        .expect("query status")
        .json()
        .await
        .expect("query JSON");
    assert_eq!(body["status"], "success", "{promql}: {body}");
    body["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|series| {
            let labels = series["metric"]
                .as_object()
                .expect("metric")
                .iter()
                .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_owned()))
                .collect();
            let value = series["value"][1]
                .as_str()
                .and_then(|value| value.parse().ok())
                .expect("value");
            (labels, value)
        })
        .collect()
}

/// The series of `metric` from the test's host, once there are some.
async fn host_series(
    vm: &VictoriaMetrics,
    metric: &str,
    processes: &mut [&mut Gomon],
) -> Vec<Series> {
    let promql = format!("{metric}{{host=\"{HOST}\"}}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let series = query(vm, &promql).await;
        if !series.is_empty() {
            return series;
        }
        for process in processes.iter_mut() {
            process.assert_running();
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = processes.iter().map(|p| p.log_tail()).collect();
            panic!(
                "no {promql} in VictoriaMetrics within 60 s\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn label<'a>(series: &'a Series, name: &str) -> &'a str {
    series.0.get(name).map(String::as_str).unwrap_or_default()
}

/// This machine's facts, read as the agent reads them.
fn mem_total_bytes() -> f64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let kb: f64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .expect("MemTotal in /proc/meminfo");
    kb * 1024.0
}

fn cpus() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/stat")
        .expect("/proc/stat")
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|name| name.strip_prefix("cpu"))
        .filter(|number| !number.is_empty())
        .map(str::to_owned)
        .collect()
}

fn mountpoints() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/1/mounts")
        .expect("/proc/1/mounts")
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .map(str::to_owned)
        .collect()
}

fn network_devices() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/net/dev")
        .expect("/proc/net/dev")
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(device, _)| device.trim().to_owned())
        .collect()
}

/// The event a Slack message announces, from its text.
fn event_of(message: &Received) -> &'static str {
    [
        ("FIRING", "created"),
        ("ACKNOWLEDGED", "acknowledged"),
        ("RESOLVED", "resolved"),
    ]
    .into_iter()
    .find(|(word, _)| message.text.contains(word))
    .map_or("unknown", |(_, event)| event)
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_metrics_reach_victoria_metrics_through_kafka_and_an_alert_lifecycle_reaches_slack() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = postgres_database();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 3).await;
    let vm = VictoriaMetrics::start();
    let slack = FakeSlack::start().await;

    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let mut alerting = Gomon::start(
        "alerting",
        &dir,
        &[
            ("GOMON_ALERTING__LISTEN", format!("127.0.0.1:{api_port}")),
            ("GOMON_ALERTING__DATABASE__URL", database_url),
            (
                "GOMON_ALERTING__SLACK__WEBHOOK_URL",
                slack.webhook_url.clone(),
            ),
            ("GOMON_ALERTING__SLACK__PUBLIC_URL", api.clone()),
            ("GOMON_ALERTING__OUTBOX__POLL_INTERVAL", "100ms".to_owned()),
            ("GOMON_ALERTING__OUTBOX__MIN_BACKOFF", "100ms".to_owned()),
            ("GOMON_ALERTING__OUTBOX__MAX_BACKOFF", "1s".to_owned()),
        ],
    );
    let aggregator_port = free_port();
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
        ],
    );
    let agent_port = free_port();
    let mut agent = Gomon::start(
        "agent",
        &dir,
        &[
            ("GOMON_AGENT__LISTEN", format!("127.0.0.1:{agent_port}")),
            ("GOMON_AGENT__HOSTNAME", HOST.to_owned()),
            ("GOMON_AGENT__INTERVAL", "1s".to_owned()),
            ("GOMON_AGENT__KAFKA__BROKERS", broker.address()),
            ("GOMON_AGENT__KAFKA__TOPIC", TOPIC.to_owned()),
            ("GOMON_AGENT__KAFKA__DELIVERY_TIMEOUT", "5s".to_owned()),
        ],
    );
    wait_ready(&mut alerting, &format!("{api}/health/ready")).await;
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

    // The alert's lifecycle through the API, while the metrics flow.
    let client = reqwest::Client::new();
    let (status, created) = send(client.post(format!("{api}/api/v1/alerts")).json(&json!({
        "source": "api",
        "severity": "P2",
        "title": "End-to-end check",
        "description": "created by the end-to-end test",
        "labels": {"test": "end-to-end"},
    })))
    .await;
    assert_eq!(status, 201, "create: {created}\n{}", alerting.log_tail());
    let id = created["id"].as_str().expect("alert id").to_owned();
    let (status, listed) =
        send(client.get(format!("{api}/api/v1/alerts?label=test=end-to-end"))).await;
    assert_eq!(status, 200, "list: {listed}");
    let ids: Vec<&str> = listed["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter_map(|alert| alert["id"].as_str())
        .collect();
    assert_eq!(ids, [id.as_str()], "the new alert is listed: {listed}");
    let (status, acknowledged) = send(
        client
            .put(format!("{api}/api/v1/alerts/{id}/acknowledge"))
            .json(&json!({"by": "e2e"})),
    )
    .await;
    assert_eq!(status, 200, "acknowledge: {acknowledged}");
    assert_eq!(acknowledged["status"], "acknowledged");
    let (status, resolved) = send(client.put(format!("{api}/api/v1/alerts/{id}/resolve"))).await;
    assert_eq!(status, 200, "resolve: {resolved}");
    assert_eq!(resolved["status"], "resolved");
    let (_, fetched) = send(client.get(format!("{api}/api/v1/alerts/{id}"))).await;
    assert_eq!(fetched["status"], "resolved", "{fetched}");

    // Host metrics: agent -> tansu -> aggregator -> VictoriaMetrics, under the agent's host label.
    let mut processes = [&mut agent, &mut aggregator];
    let memory = host_series(&vm, "node_memory_MemTotal_bytes", &mut processes).await;
    assert_eq!(memory.len(), 1, "{memory:?}");
    assert_eq!(
        memory[0].1,
        mem_total_bytes(),
        "MemTotal as /proc/meminfo gives it"
    );

    let cpu = host_series(&vm, "node_cpu_seconds_total", &mut processes).await;
    let reported: BTreeSet<String> = cpu.iter().map(|s| label(s, "cpu").to_owned()).collect();
    assert_eq!(reported, cpus(), "one set of series per CPU of /proc/stat");
    let modes: BTreeSet<&str> = cpu.iter().map(|s| label(s, "mode")).collect();
    assert!(
        modes.contains("idle") && modes.contains("user"),
        "{modes:?}"
    );
    assert!(cpu.iter().all(|s| s.1 >= 0.0), "{cpu:?}");
    let usage = host_series(&vm, "gomon_cpu_usage_percent", &mut processes).await;
    assert!(
        usage.iter().all(|s| (0.0..=100.0).contains(&s.1)),
        "usage in 0-100: {usage:?}"
    );

    let filesystems = host_series(&vm, "node_filesystem_size_bytes", &mut processes).await;
    let mounted = mountpoints();
    for series in &filesystems {
        assert!(
            mounted.contains(label(series, "mountpoint"))
                && !label(series, "fstype").is_empty()
                && !label(series, "device").is_empty()
                && series.1 > 0.0,
            "a mounted filesystem of this machine with its size: {series:?}"
        );
    }

    // The agent's default excludes `lo`: a machine with no other interface fails here, as a missing part.
    let network = host_series(&vm, "node_network_receive_bytes_total", &mut processes).await;
    let devices = network_devices();
    for series in &network {
        assert!(
            devices.contains(label(series, "device")) && label(series, "device") != "lo",
            "a network device of /proc/net/dev (lo excluded): {series:?}"
        );
    }
    // What VictoriaMetrics holds came by remote write from the aggregator (VictoriaMetrics scrapes nothing here).
    let written = reqwest::get(format!("http://127.0.0.1:{aggregator_port}/metrics"))
        .await
        .expect("aggregator metrics")
        .text()
        .await
        .expect("aggregator metrics text");
    let samples_written: f64 = written
        .lines()
        .find_map(|line| line.strip_prefix("aggregator_samples_written_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_default();
    assert!(samples_written > 0.0, "{written}");

    // Slack received created, acknowledged and resolved, in that order, each about this alert.
    let messages = eventually(Duration::from_secs(30), "three Slack messages", || async {
        let accepted = slack.accepted();
        (accepted.len() >= 3).then_some(accepted)
    })
    .await;
    let events: Vec<&str> = messages.iter().map(event_of).collect();
    assert_eq!(
        events,
        ["created", "acknowledged", "resolved"],
        "{messages:?}"
    );
    for message in &messages {
        assert_eq!(message.via, "webhook");
        assert!(
            message.text.contains("End-to-end check"),
            "{}",
            message.text
        );
        assert!(
            message
                .blocks
                .to_string()
                .contains(&format!("/api/v1/alerts/{id}")),
            "links to the alert: {}",
            message.blocks
        );
    }
    let (_, sent) = send(client.get(format!(
        "{api}/api/v1/notifications?status=sent&alert_id={id}"
    )))
    .await;
    assert_eq!(sent["total"], 3, "{sent}");

    // Each stops cleanly on SIGTERM.
    for process in [agent, aggregator, alerting] {
        let role = process.role;
        let tail = process.log_tail();
        let status = process.terminate();
        assert!(
            status.success(),
            "gomon {role} exited with {status}\n{tail}"
        );
    }
    assert_eq!(slack.accepted().len(), 3, "no further Slack message");
    eprintln!("end to end in {:.1} s", started.elapsed().as_secs_f64());
}
