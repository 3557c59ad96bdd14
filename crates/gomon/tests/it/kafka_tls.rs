//! TLS to Kafka, configured as a user does it (`GOMON_AGENT__KAFKA__TLS__CA_FILE` and the rest): `gomon agent`
//! and `gomon aggregator` as processes against a tansu broker reachable only through stunnel, with a CA the test
//! makes. With the CA they publish and consume and the samples reach VictoriaMetrics; with client certificates
//! required, a client that has one gets through and one without does not; an agent that trusts another CA logs
//! the certificate problem at ERROR, naming the broker, and keeps its batches; a TLS file that does not exist stops
//! either role at start-up with exit status 2 naming the key.
//!
//! tansu, stunnel (`apt-get install stunnel4`) and VictoriaMetrics are required: a missing one fails the test.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Gomon, wait_ready};
use gomon_testkit::tls::{Pki, TlsBroker};
use gomon_testkit::{VictoriaMetrics, eventually, free_port};
use rdkafka::producer::{BaseProducer, Producer as _};

const TOPIC: &str = "gomon.metrics";

/// The TLS settings of a role as environment variables (`GOMON_{ROLE}__KAFKA__TLS__...`): the CA, and the client
/// certificate and key when `client` is given.
fn tls_env(role: &str, ca: &Path, client: Option<&Pki>) -> Vec<(String, String)> {
    let prefix = format!("GOMON_{}__KAFKA__TLS__", role.to_uppercase());
    let mut env = vec![(format!("{prefix}CA_FILE"), ca.display().to_string())];
    if let Some(pki) = client {
        env.push((
            format!("{prefix}CERT_FILE"),
            pki.client_cert_file().display().to_string(),
        ));
        env.push((
            format!("{prefix}KEY_FILE"),
            pki.client_key_file().display().to_string(),
        ));
    }
    env
}

/// `gomon agent` publishing every second as `host` to `brokers`, with `tls` settings; the agent's port.
fn start_agent(
    dir: &tempfile::TempDir,
    host: &str,
    brokers: &str,
    tls: Vec<(String, String)>,
) -> (Gomon, u16) {
    let port = free_port();
    let mut env = vec![
        (
            "GOMON_AGENT__LISTEN".to_owned(),
            format!("127.0.0.1:{port}"),
        ),
        ("GOMON_AGENT__HOSTNAME".to_owned(), host.to_owned()),
        ("GOMON_AGENT__INTERVAL".to_owned(), "1s".to_owned()),
        ("GOMON_AGENT__KAFKA__BROKERS".to_owned(), brokers.to_owned()),
        ("GOMON_AGENT__KAFKA__TOPIC".to_owned(), TOPIC.to_owned()),
        (
            "GOMON_AGENT__KAFKA__DELIVERY_TIMEOUT".to_owned(),
            "3s".to_owned(),
        ),
    ];
    env.extend(tls);
    (start(dir, "agent", &env), port)
}

/// `gomon aggregator` consuming from `brokers` with `tls` settings and writing to `vm`.
fn start_aggregator(
    dir: &tempfile::TempDir,
    brokers: &str,
    vm: &VictoriaMetrics,
    tls: Vec<(String, String)>,
) -> Gomon {
    let mut env = vec![
        (
            "GOMON_AGGREGATOR__LISTEN".to_owned(),
            format!("127.0.0.1:{}", free_port()),
        ),
        (
            "GOMON_AGGREGATOR__KAFKA__BROKERS".to_owned(),
            brokers.to_owned(),
        ),
        (
            "GOMON_AGGREGATOR__KAFKA__TOPIC".to_owned(),
            TOPIC.to_owned(),
        ),
        (
            "GOMON_AGGREGATOR__KAFKA__SESSION_TIMEOUT".to_owned(),
            "6s".to_owned(),
        ),
        (
            "GOMON_AGGREGATOR__REMOTE_WRITE__URL".to_owned(),
            vm.write_url(),
        ),
        (
            "GOMON_AGGREGATOR__REMOTE_WRITE__MAX_DELAY".to_owned(),
            "200ms".to_owned(),
        ),
    ];
    env.extend(tls);
    start(dir, "aggregator", &env)
}

fn start(dir: &tempfile::TempDir, role: &'static str, env: &[(String, String)]) -> Gomon {
    let env: Vec<(&str, String)> = env
        .iter()
        .map(|(key, value)| (key.as_str(), value.clone()))
        .collect();
    Gomon::start(role, dir, &env)
}

/// Waits (60 s at most) until VictoriaMetrics holds series of `host`, while the processes run.
async fn host_series_arrive(vm: &VictoriaMetrics, host: &str, processes: &mut [&mut Gomon]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if !vm.export(&format!("{{host=\"{host}\"}}")).await.is_empty() {
            return;
        }
        for process in processes.iter_mut() {
            process.assert_running();
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = processes.iter().map(|p| p.log_tail()).collect();
            panic!(
                "no series of host {host} in VictoriaMetrics within 60 s\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn agent_metric(port: u16, name: &str) -> f64 {
    gomon_testkit::metric(&format!("http://127.0.0.1:{port}/metrics"), name)
        .await
        .unwrap_or(0.0)
}

/// The agent's counters, once it has failed to publish at least once: (sent, failed, buffered).
async fn failing_agent(agent: &mut Gomon, port: u16) -> (f64, f64, f64) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        agent.assert_running();
        let failed = agent_metric(port, "agent_batches_failed_total").await;
        let buffered = agent_metric(port, "agent_buffer_batches").await;
        if failed >= 1.0 && buffered >= 2.0 {
            let sent = agent_metric(port, "agent_batches_sent_total").await;
            return (sent, failed, buffered);
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not report a failed publish with batches buffered within 40 s \
             (failed {failed}, buffered {buffered})\n{}",
            agent.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_and_aggregator_work_through_tls_with_the_ca_the_broker_certificate_is_signed_by() {
    const HOST: &str = "tls-host";
    let pki = Pki::generate();
    let broker = TlsBroker::start(&pki);
    broker.create_topic(TOPIC, 2).await;
    let vm = VictoriaMetrics::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut aggregator = start_aggregator(
        &dir,
        &broker.address(),
        &vm,
        tls_env("aggregator", &pki.ca_file(), None),
    );
    let (mut agent, agent_port) = start_agent(
        &dir,
        HOST,
        &broker.address(),
        tls_env("agent", &pki.ca_file(), None),
    );
    wait_ready(
        &mut agent,
        &format!("http://127.0.0.1:{agent_port}/health/ready"),
    )
    .await;
    host_series_arrive(&vm, HOST, &mut [&mut agent, &mut aggregator]).await;
    assert!(agent_metric(agent_port, "agent_batches_sent_total").await >= 1.0);
    // The clients' connections went through stunnel, and its port speaks nothing but TLS.
    assert!(
        broker.log().contains("accepted connection"),
        "stunnel accepted no connection:\n{}",
        broker.log()
    );
    let plaintext: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .create()
        .expect("plaintext client");
    let metadata = tokio::task::block_in_place(|| {
        plaintext
            .client()
            .fetch_metadata(Some(TOPIC), Duration::from_secs(3))
    });
    assert!(
        metadata.is_err(),
        "a plaintext client got metadata from the TLS port"
    );
    assert!(agent.terminate().success());
    assert!(aggregator.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_client_certificates_required_a_client_with_one_gets_through_and_one_without_does_not()
{
    const HOST: &str = "mtls-host";
    const NO_CERTIFICATE: &str = "mtls-no-certificate";
    let pki = Pki::generate();
    let broker = TlsBroker::start_mutual(&pki);
    broker.create_topic(TOPIC, 2).await;
    let vm = VictoriaMetrics::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut aggregator = start_aggregator(
        &dir,
        &broker.address(),
        &vm,
        tls_env("aggregator", &pki.ca_file(), Some(&pki)),
    );
    let (mut agent, agent_port) = start_agent(
        &dir,
        HOST,
        &broker.address(),
        tls_env("agent", &pki.ca_file(), Some(&pki)),
    );
    // The same CA, no certificate of its own.
    let other_dir = tempfile::tempdir().expect("temp dir");
    let (mut refused, refused_port) = start_agent(
        &other_dir,
        NO_CERTIFICATE,
        &broker.address(),
        tls_env("agent", &pki.ca_file(), None),
    );
    host_series_arrive(&vm, HOST, &mut [&mut agent, &mut aggregator]).await;
    assert!(agent_metric(agent_port, "agent_batches_sent_total").await >= 1.0);

    let (sent, failed, buffered) = failing_agent(&mut refused, refused_port).await;
    assert_eq!(sent, 0.0, "{}", refused.log_tail());
    assert!(failed >= 1.0 && buffered >= 2.0);
    // It says why: the broker wants a certificate, which agent.kafka.tls.cert_file gives.
    let log = refused.log();
    assert!(
        log.lines().any(|line| line.contains("\"level\":\"ERROR\"")
            && line.contains("certificate required")
            && line.contains("agent.kafka.tls.cert_file")),
        "{}",
        refused.log_tail()
    );
    assert!(
        vm.export(&format!("{{host=\"{NO_CERTIFICATE}\"}}"))
            .await
            .is_empty(),
        "samples of the agent without a certificate reached VictoriaMetrics"
    );
    assert!(
        broker.log().contains("peer did not return a certificate"),
        "stunnel did not refuse a client for want of a certificate:\n{}",
        broker.log()
    );
    assert!(agent.terminate().success());
    assert!(aggregator.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_trusts_another_ca_logs_the_certificate_problem_at_error_and_keeps_its_batches()
 {
    let pki = Pki::generate();
    let other = Pki::generate();
    let broker = TlsBroker::start(&pki);
    broker.create_topic(TOPIC, 1).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut agent, port) = start_agent(
        &dir,
        "wrong-ca-host",
        &broker.address(),
        tls_env("agent", &other.ca_file(), None),
    );
    let (sent, failed, buffered) = failing_agent(&mut agent, port).await;
    assert_eq!(sent, 0.0);
    assert!(failed >= 1.0 && buffered >= 2.0);
    // GoMon's own line at ERROR says what failed, at which broker, and which settings to check; the warning of the
    // failed publish names the same cause.
    let address = broker.address();
    let lines = |level: &'static str, message: &'static str| {
        let log = agent.log();
        async move {
            log.lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .find(|line| {
                    line["level"] == level
                        && line["target"]
                            .as_str()
                            .is_some_and(|target| target.starts_with("gomon"))
                        && line["message"]
                            .as_str()
                            .is_some_and(|text| text.starts_with(message))
                })
        }
    };
    let error = eventually(
        Duration::from_secs(20),
        "GoMon's ERROR line about the broker's certificate",
        || lines("ERROR", "cannot connect to Kafka"),
    )
    .await;
    let text = error["message"].as_str().unwrap_or_default();
    assert!(text.contains("certificate verify failed"), "{error}");
    assert!(text.contains(&address), "{error}");
    let hint = error["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("agent.kafka.tls.ca_file"), "{error}");
    let warning = eventually(
        Duration::from_secs(20),
        "the warning of a failed publish",
        || lines("WARN", "cannot publish to Kafka"),
    )
    .await;
    let cause = warning["error"].as_str().unwrap_or_default();
    assert!(cause.contains("certificate verify failed"), "{warning}");
    assert!(cause.contains("agent.kafka.tls.ca_file"), "{warning}");
    agent.assert_running();
    assert!(agent.terminate().success());
}

#[test]
fn a_tls_file_that_does_not_exist_stops_agent_and_aggregator_at_start_up_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing-ca.pem");
    for role in ["agent", "aggregator"] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gomon"));
        for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("GOMON_")) {
            command.env_remove(key);
        }
        let output = command
            .arg(role)
            .env(
                format!("GOMON_{}__LISTEN", role.to_uppercase()),
                format!("127.0.0.1:{}", free_port()),
            )
            .env(
                format!("GOMON_{}__KAFKA__TLS__CA_FILE", role.to_uppercase()),
                &missing,
            )
            .output()
            .expect("run gomon");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "gomon {role}: {stderr}");
        assert!(
            stderr.contains(&format!("{role}.kafka.tls.ca_file")),
            "gomon {role}: {stderr}"
        );
        assert!(
            stderr.contains(&missing.display().to_string()),
            "gomon {role}: {stderr}"
        );
    }
}
