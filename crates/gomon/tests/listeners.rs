//! Every role's HTTP listener (`gomon up`'s too) under slow clients: a connection that never finishes its request is closed after
//! `http.header_read_timeout`, and no more than `http.max_connections` are served at once.

mod support;

use std::time::{Duration, Instant};

use gomon_testkit::{free_port, slow_clients_closed};
use support::Gomon;

/// Fills every connection slot of the listener on `port` with slow clients, then shows that a proper request waits
/// until the server has cut them (after its 1 s header-read timeout) and is answered then.
async fn slow_clients_are_cut_and_connections_bounded(process: &mut Gomon, port: u16) {
    support::wait_ready(process, &format!("http://127.0.0.1:{port}/health/live")).await;
    let address = format!("127.0.0.1:{port}");
    let slow = tokio::spawn({
        let address = address.clone();
        async move { slow_clients_closed(&address, 8, Duration::from_secs(6)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let answer = reqwest::Client::new()
        .get(format!("http://{address}/health/live"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("a proper request is answered once slots are free");
    let waited = started.elapsed();
    assert!(answer.status().is_success(), "{}", answer.status());
    assert!(
        waited >= Duration::from_millis(400),
        "answered in {waited:?}, beside 8 connections held open with max_connections 8"
    );
    let closed = slow.await.expect("slow clients");
    assert_eq!(
        closed,
        8,
        "slow connections closed by the server\n{}",
        process.log_tail()
    );
    process.assert_running();
}

fn limits(role: &str) -> Vec<(String, String)> {
    let section = role.to_uppercase();
    vec![
        (
            format!("GOMON_{section}__HTTP__HEADER_READ_TIMEOUT"),
            "1s".to_owned(),
        ),
        (
            format!("GOMON_{section}__HTTP__MAX_CONNECTIONS"),
            "8".to_owned(),
        ),
    ]
}

fn env(pairs: &[(String, String)]) -> Vec<(&str, String)> {
    pairs
        .iter()
        .map(|(key, value)| (key.as_str(), value.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerting_listener_cuts_slow_clients() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = free_port();
    let mut pairs = limits("alerting");
    pairs.push(("GOMON_ALERTING__LISTEN".into(), format!("127.0.0.1:{port}")));
    pairs.push((
        "GOMON_ALERTING__DATABASE__DATA_DIR".into(),
        dir.path().display().to_string(),
    ));
    let mut process = Gomon::start("alerting", &dir, &env(&pairs));
    slow_clients_are_cut_and_connections_bounded(&mut process, port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_listener_cuts_slow_clients() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = free_port();
    let mut pairs = limits("agent");
    pairs.push(("GOMON_AGENT__LISTEN".into(), format!("127.0.0.1:{port}")));
    // No broker: the agent buffers, and its listener serves meanwhile.
    pairs.push((
        "GOMON_AGENT__KAFKA__BROKERS".into(),
        format!("127.0.0.1:{}", free_port()),
    ));
    let mut process = Gomon::start("agent", &dir, &env(&pairs));
    slow_clients_are_cut_and_connections_bounded(&mut process, port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_listener_cuts_slow_clients() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = free_port();
    let mut pairs = limits("aggregator");
    pairs.push((
        "GOMON_AGGREGATOR__LISTEN".into(),
        format!("127.0.0.1:{port}"),
    ));
    pairs.push((
        "GOMON_AGGREGATOR__KAFKA__BROKERS".into(),
        format!("127.0.0.1:{}", free_port()),
    ));
    let mut process = Gomon::start("aggregator", &dir, &env(&pairs));
    slow_clients_are_cut_and_connections_bounded(&mut process, port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_listener_cuts_slow_clients() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = free_port();
    let mut pairs = limits("alerting");
    pairs.push(("GOMON_ALERTING__LISTEN".into(), format!("127.0.0.1:{port}")));
    pairs.push((
        "GOMON_ALERTING__DATABASE__DATA_DIR".into(),
        dir.path().display().to_string(),
    ));
    pairs.push(("GOMON_AGENT__HOSTNAME".into(), "listener-test".into()));
    pairs.push(("HOME".into(), dir.path().display().to_string()));
    pairs.push((
        "KUBECONFIG".into(),
        dir.path().join("none").display().to_string(),
    ));
    let mut process = Gomon::start("up", &dir, &env(&pairs));
    slow_clients_are_cut_and_connections_bounded(&mut process, port).await;
}
