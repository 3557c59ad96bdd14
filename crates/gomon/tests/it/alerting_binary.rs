//! `gomon alerting` as a user runs it: the built binary as a separate process, configured by environment.

use crate::support;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `gomon alerting` process whose stdout lines are collected.
struct Gomon {
    child: Child,
    base: String,
    lines: Arc<Mutex<Vec<String>>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("free port")
}

impl Gomon {
    fn start(env: &[(&str, String)]) -> Gomon {
        let gomon = Self::spawn(env);
        gomon.wait_ready();
        gomon
    }

    fn spawn(env: &[(&str, String)]) -> Gomon {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_gomon"));
        command
            .arg("alerting")
            .env("GOMON_ALERTING__LISTEN", format!("127.0.0.1:{port}"))
            .env("GOMON_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn gomon");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
            }
        });
        Gomon {
            child,
            base: format!("http://127.0.0.1:{port}"),
            lines,
        }
    }

    fn wait_ready(&self) {
        self.wait_for("/health/ready");
    }

    fn wait_for(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = Command::new("curl")
                .args(["-sf", &format!("{}{path}", self.base)])
                .output()
                .is_ok_and(|output| output.status.success());
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "gomon alerting not ready in 30 s; log: {:?}",
            self.lines.lock().expect("lines")
        );
    }

    /// SIGTERM, then the exit status and every log line.
    fn terminate(self) -> (std::process::ExitStatus, Vec<String>) {
        let (status, lines, _) = self.terminate_timed();
        (status, lines)
    }

    /// SIGTERM, then the exit status, every log line and how long it took to exit.
    fn terminate_timed(mut self) -> (std::process::ExitStatus, Vec<String>, Duration) {
        let sent = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let took = sent.elapsed();
                std::thread::sleep(Duration::from_millis(100)); // let the reader drain
                return (status, self.lines.lock().expect("lines").clone(), took);
            }
            assert!(
                Instant::now() < deadline,
                "gomon did not stop within 15 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs `script` in bash with `$BASE` set, returning its stdout; fails on a non-zero exit.
fn bash(base: &str, script: &str) -> String {
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .env("BASE", base)
        .output()
        .expect("bash");
    assert!(
        output.status.success(),
        "script failed: {script}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The seed README's curl calls, unchanged but for the host.
fn seed_curl_calls_work(base: &str) {
    let id = bash(
        base,
        r#"curl -s -X POST $BASE/api/v1/alerts \
  -H "Content-Type: application/json" \
  -d '{
    "source":"api",
    "severity":"P2",
    "title":"Database Connection Slow",
    "description":"Connection pool exhaustion detected"
  }' | jq -r '.id'"#,
    );
    let id = id.trim();
    assert_eq!(id.len(), 36, "an id came back: {id:?}");
    let listed = bash(base, "curl -s $BASE/api/v1/alerts | jq");
    assert!(listed.contains("Database Connection Slow"), "{listed}");
    let acked = bash(
        base,
        &format!("curl -s -X PUT $BASE/api/v1/alerts/{id}/acknowledge"),
    );
    assert!(acked.contains(r#""status":"acknowledged""#), "{acked}");
    let resolved = bash(
        base,
        &format!("curl -s -X PUT $BASE/api/v1/alerts/{id}/resolve"),
    );
    assert!(resolved.contains(r#""status":"resolved""#), "{resolved}");
    let created = bash(
        base,
        r#"for i in 1 2 3; do
  curl -s -o /dev/null -w '%{http_code}\n' -X POST $BASE/api/v1/alerts \
    -H "Content-Type: application/json" \
    -d '{
      "source":"kubernetes",
      "severity":"P1",
      "title":"Test Alert '$i'",
      "namespace":"test"
    }'
done"#,
    );
    assert_eq!(
        created.split_whitespace().collect::<Vec<_>>(),
        ["201", "201", "201"]
    );
    let metrics = bash(
        base,
        "curl -s $BASE/metrics | grep alerting_alerts_created_total",
    );
    assert!(
        metrics.contains(r#"alerting_alerts_created_total{severity="P1",source="kubernetes"} 3"#),
        "{metrics}"
    );
}

#[test]
fn serves_the_seed_api_on_sqlite_logs_json_and_stops_on_sigterm() {
    let data = tempfile::tempdir().expect("data dir");
    let gomon = Gomon::start(&[(
        "GOMON_ALERTING__DATABASE__DATA_DIR",
        data.path().display().to_string(),
    )]);
    seed_curl_calls_work(&gomon.base);
    let (status, lines) = gomon.terminate();
    assert!(status.success(), "exit status {status}: {lines:?}");
    assert!(data.path().join("alerting.db").exists());
    assert!(!lines.is_empty());
    for line in &lines {
        let parsed: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("log line is not JSON ({error}): {line}"));
        assert!(
            parsed["level"].is_string() && parsed["timestamp"].is_string(),
            "{line}"
        );
    }
    let text = lines.join("\n");
    assert!(
        text.contains("no API tokens configured"),
        "the open API is said at start: {text}"
    );
    assert!(text.contains("alerting service stopped"), "{text}");
}

#[test]
fn serves_the_seed_api_on_postgres() {
    let gomon = Gomon::start(&[(
        "GOMON_ALERTING__DATABASE__URL",
        support::postgres_database(),
    )]);
    seed_curl_calls_work(&gomon.base);
    let (status, _) = gomon.terminate();
    assert!(status.success());
}

/// Log lines are JSON unless a person asks for text (`--log-format text`, `GOMON_LOG_FORMAT`); `auto` gives text
/// only to `gomon up` at a terminal, which a test's pipe is not.
#[test]
fn log_lines_are_json_unless_text_is_asked_for() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let output = Command::new(env!("CARGO_BIN_EXE_gomon"))
            .args(args)
            .envs(env.iter().copied())
            .env("GOMON_ALERTING__LISTEN", "not-an-address")
            .output()
            .expect("run gomon");
        assert_eq!(output.status.code(), Some(2));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        stdout
            .lines()
            .find(|line| line.contains("cannot start"))
            .unwrap_or_else(|| panic!("no log line in {stdout:?}"))
            .to_owned()
    };
    for args in [
        &["alerting"][..],
        &["up"],
        &["--log-format", "json", "alerting"],
    ] {
        let line = run(args, &[]);
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        assert_eq!(parsed["level"], "ERROR", "{line}");
    }
    for (args, env) in [
        (&["--log-format", "text", "up"][..], &[][..]),
        (&["alerting"], &[("GOMON_LOG_FORMAT", "text")]),
    ] {
        let line = run(args, env);
        assert!(!line.starts_with('{'), "{line}");
        assert!(
            line.contains("ERROR") && line.contains("alerting.listen"),
            "{line}"
        );
    }
    let output = Command::new(env!("CARGO_BIN_EXE_gomon"))
        .args(["--log-format", "xml", "alerting"])
        .output()
        .expect("run gomon");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("possible values"));
}

#[test]
fn an_invalid_value_stops_start_up_naming_the_key() {
    let output = Command::new(env!("CARGO_BIN_EXE_gomon"))
        .arg("alerting")
        .env("GOMON_ALERTING__LISTEN", "not-an-address")
        .output()
        .expect("run gomon");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("alerting.listen"), "{stderr}");
    assert!(stderr.contains("GOMON_ALERTING__LISTEN"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_gomon"))
        .arg("alerting")
        .env(
            "GOMON_ALERTING__AUTH__TOKENS_FILE",
            "/nonexistent/tokens.yaml",
        )
        .output()
        .expect("run gomon");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("alerting.auth.tokens_file"), "{stderr}");

    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("gomon.yaml");
    std::fs::write(&file, "alerting:\n  databse:\n    url: postgres://x\n").expect("write config");
    let output = Command::new(env!("CARGO_BIN_EXE_gomon"))
        .args(["--config", file.to_str().expect("path"), "alerting"])
        .output()
        .expect("run gomon");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("databse"),
        "a misspelt key is named: {stderr}"
    );
}

#[test]
fn tokens_from_a_file_guard_the_api() {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(
        &tokens,
        "- name: ci\n  token: s3cret-token\n  access: write\n",
    )
    .expect("write tokens");
    let gomon = Gomon::start(&[
        (
            "GOMON_ALERTING__DATABASE__DATA_DIR",
            dir.path().display().to_string(),
        ),
        (
            "GOMON_ALERTING__AUTH__TOKENS_FILE",
            tokens.display().to_string(),
        ),
    ]);
    let denied = bash(
        &gomon.base,
        "curl -s -o /dev/null -w '%{http_code}' $BASE/api/v1/alerts",
    );
    assert_eq!(denied, "401");
    let allowed = bash(
        &gomon.base,
        "curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer s3cret-token' $BASE/api/v1/alerts",
    );
    assert_eq!(allowed, "200");
    let (status, lines) = gomon.terminate();
    assert!(status.success());
    assert!(
        !lines.join("\n").contains("s3cret-token"),
        "the token never appears in logs"
    );
}

#[test]
fn while_the_database_is_unreachable_it_is_alive_not_ready_and_still_stops() {
    let nobody = free_port();
    let gomon = Gomon::spawn(&[(
        "GOMON_ALERTING__DATABASE__URL",
        format!("postgres://postgres@127.0.0.1:{nobody}/alerting"),
    )]);
    gomon.wait_for("/health/live");
    let ready = bash(
        &gomon.base,
        "curl -s -o /dev/null -w '%{http_code}' $BASE/health/ready",
    );
    assert_eq!(ready, "503");
    let api = bash(&gomon.base, "curl -s $BASE/api/v1/alerts");
    assert!(api.contains("waiting for the database"), "{api}");
    let (status, lines) = gomon.terminate();
    assert!(status.success(), "{lines:?}");
    assert!(
        lines.join("\n").contains("database unreachable, retrying"),
        "{lines:?}"
    );
}

/// The seed README's "Test Circuit Breaker Pattern" loop, run as written against a webhook that fails (its
/// connections are refused): the breaker opens, `/metrics` says so, and the log says `CIRCUIT BREAKER`.
#[test]
fn the_seed_circuit_breaker_loop_opens_the_breaker() {
    let data = tempfile::tempdir().expect("data dir");
    let refused = free_port();
    let gomon = Gomon::start(&[
        (
            "GOMON_ALERTING__DATABASE__DATA_DIR",
            data.path().display().to_string(),
        ),
        (
            "GOMON_ALERTING__SLACK__WEBHOOK_URL",
            format!("http://127.0.0.1:{refused}/services/T000/B000/XXXX"),
        ),
    ]);
    bash(
        &gomon.base,
        r#"for i in {1..10}; do
  curl -X POST $BASE/api/v1/alerts \
    -H "Content-Type: application/json" \
    -d '{
      "source":"kubernetes",
      "severity":"P1",
      "title":"Test Alert '$i'",
      "namespace":"test"
    }'
  sleep 1
done"#,
    );
    let state = bash(
        &gomon.base,
        "curl -s $BASE/metrics | grep circuit_breaker_state",
    );
    assert!(
        state.contains("alerting_circuit_breaker_state 1"),
        "{state}"
    );
    let pending = bash(
        &gomon.base,
        r#"curl -s "$BASE/api/v1/notifications?status=pending" | jq .total"#,
    );
    assert_eq!(
        pending.trim(),
        "10",
        "every notification waits in the outbox"
    );
    let (status, lines) = gomon.terminate();
    assert!(status.success());
    let log = lines.join("\n");
    assert!(log.contains("CIRCUIT BREAKER"), "{log}");
    assert!(
        !log.contains("XXXX"),
        "the webhook URL is a secret and never logged"
    );
}

/// Configurations that would open the API to anyone stop start-up with exit status 2, naming the key: a tokens file
/// that holds no token (a Secret mounted empty), and a non-loopback address without tokens or
/// `alerting.auth.anonymous`.
#[test]
fn an_api_open_by_accident_does_not_start() {
    let dir = tempfile::tempdir().expect("dir");
    let empty = dir.path().join("tokens.yaml");
    std::fs::write(&empty, "[]\n").expect("write tokens");
    let run = |env: &[(&str, String)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gomon"));
        command
            .arg("alerting")
            .env("GOMON_ALERTING__DATABASE__DATA_DIR", dir.path())
            .env(
                "GOMON_ALERTING__LISTEN",
                format!("127.0.0.1:{}", free_port()),
            );
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().expect("run gomon")
    };
    let output = run(&[(
        "GOMON_ALERTING__AUTH__TOKENS_FILE",
        empty.display().to_string(),
    )]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("alerting.auth.tokens_file"), "{stderr}");
    let public = format!("0.0.0.0:{}", free_port());
    let output = run(&[("GOMON_ALERTING__LISTEN", public.clone())]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("alerting.auth.anonymous"), "{stderr}");
    // Said on purpose, it serves there.
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gomon"))
        .arg("alerting")
        .env("GOMON_ALERTING__DATABASE__DATA_DIR", dir.path())
        .env("GOMON_ALERTING__LISTEN", format!("0.0.0.0:{port}"))
        .env("GOMON_ALERTING__AUTH__ANONYMOUS", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gomon");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut live = false;
    while Instant::now() < deadline && !live {
        live = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{port}/health/live")])
            .output()
            .is_ok_and(|output| output.status.success());
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(live, "anonymous on 0.0.0.0 serves");
}

/// SIGTERM while PostgreSQL has stopped answering (a request waits on it) and Slack hangs on a delivery: the
/// service exits within `alerting.shutdown_timeout` plus a second, and the notification it could not deliver is
/// delivered after the restart.
#[test]
fn sigterm_stops_in_time_with_the_database_and_slack_hanging_and_the_notification_waits() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let slack = runtime.block_on(gomon_testkit::slack::FakeSlack::start());
    slack.set(gomon_testkit::slack::Behaviour::Slow(Duration::from_secs(
        3600,
    )));
    let database = support::postgres_database();
    let (server, name) = database.rsplit_once('/').expect("database URL");
    let upstream = server
        .rsplit_once('@')
        .map_or(server, |(_, address)| address)
        .to_owned();
    let proxy = runtime.block_on(gomon_testkit::proxy::Proxy::start(upstream));
    let env = [
        (
            "GOMON_ALERTING__DATABASE__URL",
            format!("postgres://postgres@127.0.0.1:{}/{name}", proxy.port),
        ),
        (
            "GOMON_ALERTING__SLACK__WEBHOOK_URL",
            slack.webhook_url.clone(),
        ),
        ("GOMON_ALERTING__SLACK__TIMEOUT", "5s".to_owned()),
        ("GOMON_ALERTING__OUTBOX__LEASE", "6s".to_owned()),
        ("GOMON_ALERTING__SHUTDOWN_TIMEOUT", "2s".to_owned()),
    ];
    let gomon = Gomon::start(&env);
    bash(
        &gomon.base,
        r#"curl -sf -X POST $BASE/api/v1/alerts -H 'Content-Type: application/json' \
             -d '{"title":"Waits out the outage","severity":"P1","source":"manual","namespace":"default"}'"#,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while slack.requests() == 0 {
        assert!(
            Instant::now() < deadline,
            "the delivery never reached Slack"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy.freeze();
    let waiting = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-m",
            "60",
            "-X",
            "POST",
        ])
        .arg(format!("{}/api/v1/alerts", gomon.base))
        .args(["-H", "Content-Type: application/json", "-d"])
        .arg(r#"{"title":"Sent while the database hangs","severity":"P3","source":"manual"}"#)
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    std::thread::sleep(Duration::from_millis(500));

    let (status, lines, took) = gomon.terminate_timed();
    assert!(status.success(), "{status:?}\n{}", lines.join("\n"));
    assert!(
        took < Duration::from_secs(3),
        "stopped {took:?} after SIGTERM, over its 2 s shutdown timeout plus a second\n{}",
        lines.join("\n")
    );
    assert!(
        lines
            .iter()
            .any(|line| line.contains("stopped at its shutdown timeout")),
        "{}",
        lines.join("\n")
    );
    let cut_off = waiting.wait_with_output().expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&cut_off.stdout),
        "000",
        "the request waiting for the database was cut off, not answered"
    );

    // The database answers again, Slack too: the notification left in the outbox goes out after the restart.
    proxy.restore();
    slack.set(gomon_testkit::slack::Behaviour::Ok);
    let again = Gomon::start(&env);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !slack
        .accepted()
        .iter()
        .any(|message| message.text.contains("Waits out the outage"))
    {
        assert!(
            Instant::now() < deadline,
            "the notification left in the outbox was not delivered after the restart: {:?}",
            again.lines.lock().expect("lines")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = again.terminate();
    assert!(status.success());
}
