//! The Slack client against a fake Slack: every answer Slack can give maps to the right outcome, and no secret ever
//! shows in one.

use std::time::{Duration, Instant};

use gomon_alerting::model::{NewAlert, Severity, now};
use gomon_alerting::notify::slack::{
    Event, Message, SendOutcome, SlackClient, SlackConfig, render,
};
use gomon_testkit::slack::{Behaviour, CHANNEL_ID, FakeSlack, WEBHOOK_PATH};

const TOKEN: &str = "xoxb-0000-secret-token";

fn message() -> Message {
    let alert = NewAlert {
        source: "api".into(),
        severity: Severity::P1,
        title: "Database <primary> down".into(),
        ..NewAlert::default()
    }
    .into_alert(now());
    render(&alert, Event::Created, None, None, &SlackConfig::default())
}

fn web_api(fake: &FakeSlack) -> SlackClient {
    client(SlackConfig {
        bot_token: Some(TOKEN.into()),
        api_url: fake.api_url.clone(),
        ..SlackConfig::default()
    })
}

fn webhook(fake: &FakeSlack) -> SlackClient {
    client(SlackConfig {
        webhook_url: Some(fake.webhook_url.clone().into()),
        ..SlackConfig::default()
    })
}

fn client(config: SlackConfig) -> SlackClient {
    let client = SlackClient::new(&config).expect("client builds");
    client.expect("Slack is configured")
}

/// The reason of a failed outcome, checked free of secrets.
fn reason(outcome: &SendOutcome, webhook_url: &str) -> String {
    let reason = match outcome {
        SendOutcome::Transient { reason, .. } | SendOutcome::Permanent { reason } => reason.clone(),
        SendOutcome::Accepted { .. } => return String::new(),
    };
    for secret in [TOKEN, webhook_url, WEBHOOK_PATH] {
        assert!(!reason.contains(secret), "secret in reason {reason:?}");
    }
    reason
}

#[tokio::test]
async fn webhook_accepts_the_message() {
    let fake = FakeSlack::start().await;
    let client = webhook(&fake);
    assert!(!client.uses_web_api());
    let message = message();
    let outcome = client.send(&message, "#ignored", Some("1.0")).await;
    assert_eq!(
        outcome,
        SendOutcome::Accepted {
            ts: None,
            channel: None
        }
    );
    let received = fake.accepted();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].via, "webhook");
    assert_eq!(received[0].text, message.text);
    assert_eq!(received[0].blocks, message.blocks);
    assert_eq!(received[0].channel, None, "a webhook's channel is fixed");
    assert_eq!(received[0].thread_ts, None);
    assert_eq!(received[0].authorization, None);
}

/// `chat.update` edits a message the client posted; a message Slack does not know, or an edit through an
/// incoming webhook, is refused for good.
#[tokio::test]
async fn web_api_edits_a_posted_message_and_refuses_unknown_ones() {
    let fake = FakeSlack::start().await;
    let client = web_api(&fake);
    let SendOutcome::Accepted { ts: Some(ts), .. } = client.send(&message(), "#alerts", None).await
    else {
        panic!("not posted");
    };
    let mut edited = message();
    edited.text = "edited".into();
    assert_eq!(
        client.update(&edited, CHANNEL_ID, &ts).await,
        SendOutcome::Accepted {
            ts: Some(ts.clone()),
            channel: Some(CHANNEL_ID.into())
        }
    );
    assert_eq!(fake.message(&ts).expect("posted").text, "edited");
    assert_eq!(fake.updates().len(), 1);
    assert_eq!(
        client.update(&edited, CHANNEL_ID, "1.000001").await,
        SendOutcome::Permanent {
            reason: "message_not_found".into()
        }
    );
    assert!(matches!(
        webhook(&fake).update(&edited, CHANNEL_ID, &ts).await,
        SendOutcome::Permanent { .. }
    ));
    assert_eq!(fake.updates().len(), 1);
}

#[tokio::test]
async fn web_api_accepts_with_ts_and_sends_the_token_as_bearer() {
    let fake = FakeSlack::start().await;
    let client = web_api(&fake);
    assert!(client.uses_web_api());
    let message = message();
    let first = client.send(&message, "#alerts", None).await;
    let second = client.send(&message, "#alerts", None).await;
    let received = fake.accepted();
    assert_eq!(received.len(), 2);
    for (outcome, received) in [first, second].iter().zip(&received) {
        assert_eq!(
            outcome,
            &SendOutcome::Accepted {
                ts: received.ts.clone(),
                channel: Some(CHANNEL_ID.into())
            }
        );
        assert_eq!(received.via, "api");
        assert_eq!(received.channel.as_deref(), Some("#alerts"));
        assert_eq!(received.thread_ts, None);
        assert_eq!(received.text, message.text);
        assert_eq!(received.blocks, message.blocks);
        assert_eq!(
            received.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
    assert!(received[0].ts < received[1].ts, "ts values increase");
}

#[tokio::test]
async fn web_api_is_preferred_when_both_are_configured() {
    let fake = FakeSlack::start().await;
    let client = client(SlackConfig {
        webhook_url: Some(fake.webhook_url.clone().into()),
        bot_token: Some(TOKEN.into()),
        api_url: format!("{}/", fake.api_url),
        ..SlackConfig::default()
    });
    assert!(client.uses_web_api());
    let outcome = client.send(&message(), "#alerts", None).await;
    assert!(
        matches!(outcome, SendOutcome::Accepted { ts: Some(_), .. }),
        "{outcome:?}"
    );
    assert_eq!(fake.received()[0].via, "api");
}

#[tokio::test]
async fn thread_ts_is_passed_through() {
    let fake = FakeSlack::start().await;
    let client = web_api(&fake);
    let SendOutcome::Accepted {
        ts: Some(parent), ..
    } = client.send(&message(), "#alerts", None).await
    else {
        panic!("parent not accepted");
    };
    let reply = client.send(&message(), "#alerts", Some(&parent)).await;
    assert!(
        matches!(reply, SendOutcome::Accepted { ts: Some(_), .. }),
        "{reply:?}"
    );
    let received = fake.received();
    assert_eq!(received[1].thread_ts.as_deref(), Some(parent.as_str()));
}

#[tokio::test]
async fn rate_limits_are_transient_with_retry_after() {
    let fake = FakeSlack::start().await;
    fake.set(Behaviour::RateLimited {
        retry_after_secs: 2,
    });
    for client in [webhook(&fake), web_api(&fake)] {
        let outcome = client.send(&message(), "#alerts", None).await;
        let SendOutcome::Transient { retry_after, .. } = &outcome else {
            panic!("expected transient, got {outcome:?}");
        };
        assert_eq!(*retry_after, Some(Duration::from_secs(2)));
        assert!(outcome.counts_against_receiver());
        reason(&outcome, &fake.webhook_url);
    }
    assert_eq!(fake.requests(), 2);
    assert!(fake.accepted().is_empty());
}

#[tokio::test]
async fn server_errors_are_transient() {
    let fake = FakeSlack::start().await;
    fake.set(Behaviour::ServerError);
    for client in [webhook(&fake), web_api(&fake)] {
        let outcome = client.send(&message(), "#alerts", None).await;
        assert!(
            matches!(
                &outcome,
                SendOutcome::Transient {
                    retry_after: None,
                    ..
                }
            ),
            "{outcome:?}"
        );
        let reason = reason(&outcome, &fake.webhook_url);
        assert!(
            reason.contains("500") && reason.contains("internal_error"),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn web_api_transient_error_codes_are_transient() {
    let fake = FakeSlack::start().await;
    let client = web_api(&fake);
    for code in [
        "ratelimited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
    ] {
        fake.set(Behaviour::ApiError(code));
        let outcome = client.send(&message(), "#alerts", None).await;
        assert_eq!(
            outcome,
            SendOutcome::Transient {
                reason: code.into(),
                retry_after: None
            }
        );
    }
}

#[tokio::test]
async fn slow_answers_time_out_as_transient() {
    let fake = FakeSlack::start().await;
    fake.set(Behaviour::Slow(Duration::from_secs(2)));
    for mut config in [
        SlackConfig {
            webhook_url: Some(fake.webhook_url.clone().into()),
            ..SlackConfig::default()
        },
        SlackConfig {
            bot_token: Some(TOKEN.into()),
            api_url: fake.api_url.clone(),
            ..SlackConfig::default()
        },
    ] {
        config.timeout = Duration::from_millis(200);
        let client = client(config);
        let started = Instant::now();
        let outcome = client.send(&message(), "#alerts", None).await;
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "timeout honoured"
        );
        assert!(
            matches!(&outcome, SendOutcome::Transient { .. }),
            "{outcome:?}"
        );
        let reason = reason(&outcome, &fake.webhook_url);
        assert!(reason.contains("timed out"), "{reason}");
    }
    assert_eq!(fake.requests(), 2);
}

#[tokio::test]
async fn unreachable_slack_is_transient_without_the_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let webhook_url = format!("http://{address}{WEBHOOK_PATH}");
    let client = client(SlackConfig {
        webhook_url: Some(webhook_url.clone().into()),
        ..SlackConfig::default()
    });
    let outcome = client.send(&message(), "#alerts", None).await;
    assert!(
        matches!(&outcome, SendOutcome::Transient { .. }),
        "{outcome:?}"
    );
    let reason = reason(&outcome, &webhook_url);
    assert!(reason.starts_with("connection failed: "), "{reason}");
}

#[tokio::test]
async fn web_api_errors_are_permanent_with_the_code() {
    let fake = FakeSlack::start().await;
    fake.set_for_channel("#gone", Behaviour::ApiError("channel_not_found"));
    let client = web_api(&fake);
    let outcome = client.send(&message(), "#gone", None).await;
    assert_eq!(
        outcome,
        SendOutcome::Permanent {
            reason: "channel_not_found".into()
        }
    );
    assert!(!outcome.counts_against_receiver());
    let other = client.send(&message(), "#alerts", None).await;
    assert!(matches!(other, SendOutcome::Accepted { .. }), "{other:?}");
    for code in ["invalid_auth", "not_in_channel", "is_archived"] {
        fake.set(Behaviour::ApiError(code));
        let outcome = client.send(&message(), "#alerts", None).await;
        assert_eq!(
            outcome,
            SendOutcome::Permanent {
                reason: code.into()
            }
        );
    }
}

#[tokio::test]
async fn webhook_errors_are_permanent_with_status_and_body() {
    let fake = FakeSlack::start().await;
    let client = webhook(&fake);
    for (status, body) in [
        (400, "no_text"),
        (403, "invalid_token"),
        (404, "no_service"),
        (410, "channel_is_archived"),
    ] {
        fake.set(Behaviour::WebhookError { status, body });
        let outcome = client.send(&message(), "#alerts", None).await;
        assert!(
            matches!(&outcome, SendOutcome::Permanent { .. }),
            "{outcome:?}"
        );
        assert!(!outcome.counts_against_receiver());
        let reason = reason(&outcome, &fake.webhook_url);
        assert!(
            reason.contains(&status.to_string()) && reason.contains(body),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn secrets_echoed_by_slack_are_redacted() {
    let fake = FakeSlack::start().await;
    fake.set(Behaviour::WebhookError {
        status: 404,
        body: WEBHOOK_PATH,
    });
    let outcome = webhook(&fake).send(&message(), "#alerts", None).await;
    assert_eq!(
        outcome,
        SendOutcome::Permanent {
            reason: "HTTP 404 <redacted>".into()
        }
    );
    fake.set(Behaviour::ApiError(TOKEN));
    let outcome = web_api(&fake).send(&message(), "#alerts", None).await;
    assert_eq!(
        outcome,
        SendOutcome::Permanent {
            reason: "<redacted>".into()
        }
    );
}

#[tokio::test]
async fn a_message_without_content_is_refused_by_slack() {
    let fake = FakeSlack::start().await;
    let empty = Message {
        text: String::new(),
        blocks: serde_json::json!([]),
    };
    let outcome = webhook(&fake).send(&empty, "#alerts", None).await;
    assert_eq!(
        outcome,
        SendOutcome::Permanent {
            reason: "HTTP 400 no_text".into()
        }
    );
    let outcome = web_api(&fake).send(&empty, "#alerts", None).await;
    assert_eq!(
        outcome,
        SendOutcome::Permanent {
            reason: "no_text".into()
        }
    );
}
