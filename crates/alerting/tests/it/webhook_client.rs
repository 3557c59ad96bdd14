//! The webhook client against a stand-in that checks Alertmanager's webhook payload (version 4) strictly, and
//! against hostile servers: answers that never end or are huge, 4xx that retrying cannot fix, redirects, a port
//! that refuses; and configurations that are not an http(s) URL. No secret ever shows in a reason.

use std::time::{Duration, Instant};

use gomon_alerting::model::{NewAlert, Severity, now};
use gomon_alerting::notify::outcome::SendOutcome;
use gomon_alerting::notify::webhook::payload::{self, Change, WebhookMessage};
use gomon_alerting::notify::webhook::{WebhookClient, WebhookConfig};
use gomon_testkit::webhook::{Behaviour, WebhookReceiver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TOKEN: &str = "webhook-secret-token";

fn message() -> WebhookMessage {
    let mut alert = NewAlert {
        source: "prometheus".into(),
        severity: Severity::P1,
        title: "Database <primary> down".into(),
        namespace: Some("prod".into()),
        description: Some("replication stopped".into()),
        ..NewAlert::default()
    }
    .into_alert(now());
    alert.labels.insert("instance".into(), "db-0:5432".into());
    let change = Change {
        event: "acknowledged",
        actor: Some("alice"),
        note: None,
    };
    payload::notification("hook", &alert, change, 0, "https://gomon.example.com")
}

fn config(url: &str) -> WebhookConfig {
    WebhookConfig {
        url: Some(url.into()),
        bearer_token: Some(TOKEN.into()),
        timeout: Duration::from_millis(500),
        ..WebhookConfig::default()
    }
}

fn client(url: &str) -> WebhookClient {
    WebhookClient::new(&config(url)).expect("client builds")
}

/// The reason of a failed outcome, checked free of secrets.
fn reason(outcome: &SendOutcome) -> String {
    let reason = match outcome {
        SendOutcome::Transient { reason, .. } | SendOutcome::Permanent { reason } => reason.clone(),
        SendOutcome::Accepted { .. } => return String::new(),
    };
    for secret in [TOKEN, "/hooks/gomon", "s3cr3t"] {
        assert!(!reason.contains(secret), "secret in reason {reason:?}");
    }
    reason
}

#[tokio::test]
async fn a_valid_version_4_payload_is_accepted() {
    let receiver = WebhookReceiver::start().await;
    let outcome = client(&receiver.url).send(&message()).await;
    assert_eq!(
        outcome,
        SendOutcome::Accepted {
            ts: None,
            channel: None
        }
    );
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert!(
        received[0].problems.is_empty(),
        "{:?}",
        received[0].problems
    );
    assert_eq!(
        received[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let payload = &received[0].payload;
    assert_eq!(payload["version"], "4");
    assert_eq!(payload["receiver"], "hook");
    assert_eq!(payload["status"], "firing");
    assert_eq!(payload["externalURL"], "https://gomon.example.com");
    let alert = &payload["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "Database <primary> down");
    assert_eq!(alert["labels"]["severity"], "P1");
    assert_eq!(alert["labels"]["instance"], "db-0:5432");
    assert_eq!(alert["annotations"]["description"], "replication stopped");
    assert_eq!(alert["annotations"]["gomon_event"], "acknowledged");
    assert_eq!(alert["annotations"]["gomon_actor"], "alice");
    assert!(
        alert["generatorURL"]
            .as_str()
            .is_some_and(|url| url.starts_with("https://gomon.example.com/api/v1/alerts/"))
    );
}

#[tokio::test]
async fn the_stand_in_refuses_what_is_not_version_4() {
    let receiver = WebhookReceiver::start().await;
    let http = reqwest::Client::new();
    let mut valid = serde_json::to_value(message()).expect("JSON");
    valid["version"] = "3".into();
    valid["alerts"][0]["startsAt"] = "yesterday".into();
    valid["extra"] = true.into();
    let answer = http
        .post(&receiver.url)
        .json(&valid)
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), 400);
    let problems = receiver.problems().join("\n");
    for problem in ["version", "startsAt", "unknown field extra"] {
        assert!(problems.contains(problem), "{problems}");
    }
}

#[tokio::test]
async fn server_errors_are_transient_and_client_errors_permanent() {
    let receiver = WebhookReceiver::start().await;
    let client = client(&receiver.url);
    for (status, transient) in [
        (500, true),
        (503, true),
        (429, true),
        (400, false),
        (401, false),
        (404, false),
    ] {
        receiver.set(Behaviour::Status(status));
        let outcome = client.send(&message()).await;
        assert_eq!(
            outcome.counts_against_receiver(),
            transient,
            "{status}: {outcome:?}"
        );
        assert!(
            reason(&outcome).starts_with(&format!("HTTP {status}")),
            "{outcome:?}"
        );
    }
    assert!(receiver.problems().is_empty(), "{:?}", receiver.problems());
}

#[tokio::test]
async fn a_closed_port_is_a_transient_connection_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    let outcome = client(&format!("http://127.0.0.1:{port}/hooks/gomon?token=s3cr3t"))
        .send(&message())
        .await;
    assert!(outcome.counts_against_receiver(), "{outcome:?}");
    assert!(
        reason(&outcome).starts_with("connection failed"),
        "{outcome:?}"
    );
}

/// Serves every connection with `head` and then, forever, chunks of `x` (a body that never ends).
async fn endless_server(head: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 8192, "x".repeat(8192));
                while stream.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    format!("http://{address}/hooks/gomon")
}

#[tokio::test]
async fn an_endless_error_answer_is_read_only_in_part() {
    let url = endless_server(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await;
    let started = Instant::now();
    let outcome = client(&url).send(&message()).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(outcome.counts_against_receiver(), "{outcome:?}");
    let reason = reason(&outcome);
    assert!(reason.starts_with("HTTP 500 xxx"), "{reason:.80}");
    assert!(reason.len() < 400, "{} bytes", reason.len());
}

#[tokio::test]
async fn an_endless_success_answer_is_not_waited_for() {
    let url = endless_server("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").await;
    let started = Instant::now();
    let outcome = client(&url).send(&message()).await;
    assert!(
        matches!(outcome, SendOutcome::Accepted { .. }),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let started = Instant::now();
    let outcome = client(&format!("http://{address}/hooks/gomon"))
        .send(&message())
        .await;
    assert!(outcome.counts_against_receiver(), "{outcome:?}");
    assert_eq!(reason(&outcome), "timed out after 500ms");
    assert!(started.elapsed() < Duration::from_secs(2));
    held.abort();
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let url = endless_server(
        "HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    let outcome = client(&url).send(&message()).await;
    assert!(
        matches!(outcome, SendOutcome::Permanent { .. }),
        "{outcome:?}"
    );
    assert_eq!(reason(&outcome), "HTTP 302");
}

#[test]
fn a_url_that_is_not_http_is_refused_at_start_up() {
    for url in [
        "file:///etc/passwd",
        "ftp://example.com/s3cr3t",
        "s3cr3t",
        "unix:/run/x.sock",
        "http://",
    ] {
        let error = WebhookClient::new(&config(url)).expect_err(url);
        assert_eq!(error.key, "url", "{url}");
        assert!(!error.to_string().contains("s3cr3t"), "{error}");
    }
}
