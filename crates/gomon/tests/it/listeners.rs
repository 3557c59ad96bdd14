//! Every role's HTTP listener (`gomon up`'s too) under slow clients: a connection that never finishes its request is closed after
//! `http.header_read_timeout`, and no more than `http.max_connections` are served at once.

use crate::support;
use std::time::{Duration, Instant};

use crate::support::Gomon;
use gomon_testkit::{free_port, slow_clients_closed};

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

/// Runs `gomon role`, its listener configured under `section` (1 s header-read timeout, 8 connections) with `extra`
/// settings, and checks it against slow clients.
async fn check_listener(role: &'static str, section: &str, extra: &[(&str, String)]) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = free_port();
    let section = section.to_uppercase();
    let mut pairs = vec![
        (
            format!("GOMON_{section}__HTTP__HEADER_READ_TIMEOUT"),
            "1s".to_owned(),
        ),
        (
            format!("GOMON_{section}__HTTP__MAX_CONNECTIONS"),
            "8".to_owned(),
        ),
        (
            format!("GOMON_{section}__LISTEN"),
            format!("127.0.0.1:{port}"),
        ),
        (
            "GOMON_ALERTING__DATABASE__DATA_DIR".to_owned(),
            dir.path().display().to_string(),
        ),
        ("HOME".to_owned(), dir.path().display().to_string()),
        (
            "KUBECONFIG".to_owned(),
            dir.path().join("none").display().to_string(),
        ),
    ];
    pairs.extend(
        extra
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone())),
    );
    let env: Vec<(&str, String)> = pairs
        .iter()
        .map(|(key, value)| (key.as_str(), value.clone()))
        .collect();
    let mut process = Gomon::start(role, &dir, &env);
    slow_clients_are_cut_and_connections_bounded(&mut process, port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerting_listener_cuts_slow_clients() {
    check_listener("alerting", "alerting", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_listener_cuts_slow_clients() {
    // No broker: the agent buffers, and its listener serves meanwhile.
    let brokers = format!("127.0.0.1:{}", free_port());
    check_listener(
        "agent",
        "agent",
        &[("GOMON_AGENT__KAFKA__BROKERS", brokers)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_listener_cuts_slow_clients() {
    let brokers = format!("127.0.0.1:{}", free_port());
    check_listener(
        "aggregator",
        "aggregator",
        &[("GOMON_AGGREGATOR__KAFKA__BROKERS", brokers)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_listener_cuts_slow_clients() {
    // `gomon up` serves everything on the alerting service's listener.
    check_listener(
        "up",
        "alerting",
        &[("GOMON_AGENT__HOSTNAME", "listener-test".to_owned())],
    )
    .await;
}
