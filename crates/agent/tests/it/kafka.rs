//! The agent against a real Kafka-protocol broker (tansu, in memory): what it publishes decodes to this host's
//! metrics, batches buffered while the broker is away arrive, in order, once it is back, and with no broker at all
//! it still stops within five seconds of shutdown.

use std::time::{Duration, Instant};

use gomon_agent::AgentConfig;
use gomon_proto::decode_batch;
use gomon_runtime::shutdown::Shutdown;
use gomon_testkit::{Broker, free_port};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};

fn agent_config(port: u16) -> AgentConfig {
    let mut config = AgentConfig {
        interval: Duration::from_secs(1),
        hostname: Some("node-under-test".into()),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], free_port())),
        ..AgentConfig::default()
    };
    config.kafka.brokers = format!("127.0.0.1:{port}");
    config.kafka.create_topic = true;
    config.kafka.delivery_timeout = Duration::from_secs(3);
    config
}

/// Reads `count` batches from the topic's beginning.
async fn consume(port: u16, count: usize) -> Vec<(String, gomon_proto::MetricBatch)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set("group.id", format!("test-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["gomon.metrics"]).expect("subscribe");
    let mut batches = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(45);
    while batches.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} batches arrived",
            batches.len()
        );
        let Ok(received) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await
        else {
            continue;
        };
        // Until the agent has created the topic, the consumer reports it unknown: keep reading.
        let Ok(message) = received else {
            continue;
        };
        let key = String::from_utf8_lossy(message.key().expect("key")).into_owned();
        let batch = decode_batch(message.payload().expect("payload")).expect("a MetricBatch");
        batches.push((key, batch));
    }
    batches
}

fn mem_total_bytes() -> f64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let kib: f64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .expect("MemTotal");
    kib * 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_batches_decode_to_this_hosts_metrics() {
    let port = free_port();
    let _broker = Broker::start_on(port);
    let config = agent_config(port);
    let metrics_url = format!("http://{}/metrics", config.listen);
    let (trigger, shutdown) = Shutdown::new();
    let agent = tokio::spawn(gomon_agent::run(
        config,
        gomon_runtime::metrics::registry(),
        shutdown,
    ));
    let batches = consume(port, 3).await;
    let text = reqwest::get(&metrics_url)
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    trigger.fire();
    agent.await.expect("agent task").expect("agent");

    for (key, batch) in &batches {
        assert_eq!(key, "node-under-test", "keyed by host");
        assert_eq!(batch.host, "node-under-test");
        assert!(!batch.correlation_id.is_empty());
        for name in [
            "node_cpu_seconds_total",
            "node_filesystem_avail_bytes",
            "node_load1",
        ] {
            assert!(
                batch.samples.iter().any(|s| s.name == name),
                "{name} in the batch"
            );
        }
        let memory = batch
            .samples
            .iter()
            .find(|s| s.name == "node_memory_MemTotal_bytes")
            .expect("MemTotal");
        assert_eq!(memory.value, mem_total_bytes(), "the kernel's value");
        assert!(
            memory
                .labels
                .iter()
                .any(|l| l.name == "host" && l.value == "node-under-test")
        );
    }
    let sequences: Vec<u64> = batches.iter().map(|(_, b)| b.sequence).collect();
    assert_eq!(sequences, [1, 2, 3], "in order");
    assert!(
        text.contains("node_memory_MemTotal_bytes{host=\"node-under-test\"}"),
        "{text}"
    );
    assert!(text.contains("agent_batches_sent_total"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_buffered_while_the_broker_is_away_arrive_in_order() {
    let port = free_port();
    let config = agent_config(port);
    let (trigger, shutdown) = Shutdown::new();
    let agent = tokio::spawn(gomon_agent::run(
        config,
        gomon_runtime::metrics::registry(),
        shutdown,
    ));
    // No broker for four cycles: the batches wait in the buffer.
    tokio::time::sleep(Duration::from_millis(4200)).await;
    let _broker = Broker::start_on(port);
    let batches = consume(port, 6).await;
    trigger.fire();
    agent.await.expect("agent task").expect("agent");
    let sequences: Vec<u64> = batches.iter().map(|(_, b)| b.sequence).collect();
    assert_eq!(
        sequences,
        [1, 2, 3, 4, 5, 6],
        "every buffered batch, once, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_broker_it_stops_within_five_seconds_of_shutdown() {
    // Creating the topic, then a send, waits for brokers that never answer.
    for create_topic in [true, false] {
        let mut config = agent_config(free_port());
        config.kafka.create_topic = create_topic;
        config.kafka.delivery_timeout = Duration::from_secs(60);
        let (trigger, shutdown) = Shutdown::new();
        let agent = tokio::spawn(gomon_agent::run(
            config,
            gomon_runtime::metrics::registry(),
            shutdown,
        ));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let stopping = Instant::now();
        trigger.fire();
        agent.await.expect("agent task").expect("agent");
        let took = stopping.elapsed();
        assert!(
            took < Duration::from_secs(6),
            "create_topic {create_topic}: stopped {took:?} after shutdown"
        );
    }
}
