//! `gomon up`: with no configuration and no external service it serves the API, the combined metrics and this
//! host's metrics on one listener; Ctrl-C (SIGINT) stops it cleanly and a restart keeps the alerts; a remote write
//! receiver that refuses connections neither costs CPU nor holds up SIGTERM or SIGINT past the shutdown timeout.

use crate::support;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gomon_testkit::{eventually, free_port};

fn up(dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gomon"))
        .arg("up")
        .current_dir(dir)
        .env("GOMON_ALERTING__LISTEN", format!("127.0.0.1:{port}"))
        .env("GOMON_AGENT__INTERVAL", "1s")
        .env("GOMON_AGENT__HOSTNAME", "up-test-host")
        .env("GOMON_LOG", "warn")
        .env_remove("KUBECONFIG")
        .env("HOME", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gomon up")
}

async fn get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

async fn wait_for(url: &str, what: &str, limit: Duration, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Some((200, body)) = get(url).await
            && check(&body)
        {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} at {url}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn interrupt(child: Child) -> String {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let output = child.wait_with_output().expect("exit");
    assert!(
        output.status.success(),
        "clean exit on Ctrl-C: {:?}",
        output.status
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_command_runs_everything_and_a_restart_keeps_the_alerts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let first = up(dir.path(), port);
    wait_for(
        &format!("{base}/health/ready"),
        "readiness",
        Duration::from_secs(10),
        |_| true,
    )
    .await;

    // This host's metrics went agent -> queue -> aggregator, and are served on the same listener.
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let mem_total: f64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<f64>().ok())
        .expect("MemTotal")
        * 1024.0;
    let federate = wait_for(
        &format!("{base}/federate"),
        "host metrics",
        Duration::from_secs(10),
        |body| body.contains("node_memory_MemTotal_bytes{host=\"up-test-host\","),
    )
    .await;
    assert!(
        federate.contains(&format!(
            "node_memory_MemTotal_bytes{{host=\"up-test-host\",instance=\"up-test-host\",job=\"node\"}} {mem_total}"
        )),
        "{federate}"
    );
    assert!(
        federate.contains(
            "node_cpu_seconds_total{cpu=\"0\",host=\"up-test-host\",instance=\"up-test-host\",job=\"node\",mode=\"idle\"}"
        ),
        "{federate}"
    );

    // The combined metrics hold every part's own.
    let metrics = wait_for(
        &format!("{base}/metrics"),
        "metrics",
        Duration::from_secs(10),
        |body| body.contains("aggregator_messages_consumed_total"),
    )
    .await;
    for name in [
        "agent_batches_sent_total",
        "aggregator_messages_consumed_total",
        "alerting_active_alerts",
    ] {
        assert!(metrics.contains(name), "{name} in /metrics");
    }

    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/alerts"))
        .json(&serde_json::json!({
            "title": "Disk almost full",
            "severity": "P2",
            "source": "manual",
            "namespace": "default"
        }))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    let banner = interrupt(first);
    assert!(
        banner.contains(&format!("http://127.0.0.1:{port}/api/v1/alerts")),
        "{banner}"
    );
    assert!(banner.contains("pod watcher    off"), "{banner}");
    assert!(
        dir.path().join("gomon-data").is_dir(),
        "data in ./gomon-data"
    );

    let second = up(dir.path(), port);
    let listed = wait_for(
        &format!("{base}/api/v1/alerts"),
        "the alert after a restart",
        Duration::from_secs(10),
        |body| body.contains(&id),
    )
    .await;
    assert!(listed.contains("Disk almost full"));
    interrupt(second);
}

/// `gomon up` writing to a port nobody listens on, with requests of at most 10 samples, a queue of 2 batches and a
/// shutdown timeout of 2 s: the pipeline soon stops reading and the agent waits on a full queue (the agent's
/// collection every second included, it uses under 2% of a core).
fn up_refused(dir: &tempfile::TempDir, port: u16) -> support::Gomon {
    let refused = format!("http://127.0.0.1:{}/api/v1/write", free_port());
    support::Gomon::start(
        "up",
        dir,
        &support::up_env(
            dir,
            port,
            "refused-host",
            &[
                ("GOMON_AGENT__BUFFER_BATCHES", "2".to_owned()),
                ("GOMON_AGGREGATOR__REMOTE_WRITE__URL", refused),
                (
                    "GOMON_AGGREGATOR__REMOTE_WRITE__MAX_SAMPLES_PER_REQUEST",
                    "10".to_owned(),
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
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_refuses_connections_does_not_hold_up_a_stop() {
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut up = up_refused(&dir, port);
        let metrics = format!("http://127.0.0.1:{port}/metrics");
        support::wait_ready(&mut up, &format!("http://127.0.0.1:{port}/health/ready")).await;
        // Two requests retrying, the next one full, the queue full: the agent drops batches it cannot hand over.
        eventually(
            Duration::from_secs(30),
            "the agent held up by a full queue",
            || async {
                let dropped =
                    gomon_testkit::metric(&metrics, "agent_batches_dropped_total").await?;
                let in_flight =
                    gomon_testkit::metric(&metrics, "aggregator_writes_in_flight").await?;
                (dropped >= 1.0 && in_flight == 2.0).then_some(())
            },
        )
        .await;
        let cpu = up.cpu_seconds();
        let wall = Instant::now();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let share = (up.cpu_seconds() - cpu) / wall.elapsed().as_secs_f64();
        println!(
            "gomon up, receiver refusing connections: {:.2}% of a core",
            share * 100.0
        );
        assert!(
            share < 0.02,
            "{:.1}% of a core while the receiver refuses connections\n{}",
            share * 100.0,
            up.log_tail()
        );
        let signalled = Instant::now();
        let status = up.signal(signal);
        let took = signalled.elapsed();
        let log = std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
        println!("gomon up stopped {took:?} after SIG{signal}");
        assert!(status.success(), "SIG{signal}: {status}\n{log}");
        assert!(
            took < Duration::from_secs(3),
            "stopped {took:?} after SIG{signal}; shutdown_timeout is 2 s\n{log}"
        );
    }
}

/// A remote write receiver that refuses GoMon's credentials (401) blocks the aggregator: `gomon up` says so on
/// `/health/ready` (503, naming the remote write) as `gomon aggregator` does, and its console's Status page too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_refusing_the_credentials_makes_up_not_ready() {
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").expect("receiver");
    let address = receiver.local_addr().expect("address");
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in receiver.incoming().map_while(Result::ok) {
            let mut stream = stream;
            let mut buffer = [0u8; 65536];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut up = support::Gomon::start(
        "up",
        &dir,
        &support::up_env(
            &dir,
            port,
            "blocked-host",
            &[(
                "GOMON_AGGREGATOR__REMOTE_WRITE__URL",
                format!("http://{address}/api/v1/write"),
            )],
        ),
    );
    let url = format!("http://127.0.0.1:{port}/health/ready");
    let deadline = Instant::now() + Duration::from_secs(30);
    // While it starts, `gomon up` answers 503 `starting: …`; the answer to wait for is the blocked remote write.
    let health = loop {
        up.assert_running();
        if let Some((503, body)) = get(&url).await {
            let health: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            if health["status"] == "unavailable" {
                break health;
            }
        }
        assert!(
            Instant::now() < deadline,
            "never unready while blocked\n{}",
            up.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        health["reason"].as_str().is_some_and(
            |reason| reason.contains("Remote write") && reason.contains("unauthorized")
        ),
        "{health}"
    );
    assert_eq!(health["components"][0]["state"], "blocked", "{health}");
    let status = up.terminate();
    assert!(status.success(), "{status:?}");
}
