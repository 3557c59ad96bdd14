//! The email receiver end to end: the whole service against a real SMTP server (aiosmtpd) that requires STARTTLS
//! and authentication, on SQLite and PostgreSQL; every message read back.

use std::time::Duration;

use crate::notifications::{config, eventually, full_lifecycle};
use crate::support::{Backend, Database, Server, post_alert};
use gomon_alerting::Config;
use gomon_alerting::notify::email::EmailConfig;
use gomon_alerting::notify::policy::{NotifyConfig, ReceiverConfig, ReceiverKind, RouteConfig};
use gomon_alerting::notify::slack::SlackConfig;
use gomon_testkit::slack::FakeSlack;
use gomon_testkit::smtp::{PASSWORD, SmtpServer, USER};
use gomon_testkit::tls::Pki;

on_both_stores!(
    each_change_is_one_email_over_starttls_threaded_by_alert,
    a_refused_login_fails_the_email_without_leaking_the_password,
);

/// Receiver `mail` (to two recipients, through `server` with `password`) for P1 alerts.
fn policy(
    database: &Database,
    slack: &FakeSlack,
    pki: &Pki,
    server: &SmtpServer,
    password: &str,
) -> Config {
    let mut config = config(database, slack, false);
    // A TLS handshake and login on a busy test machine can take seconds: a timeout that cut it short would send
    // the email again (delivered twice, or out of order), so the receiver has its default timeout, and the lease
    // is longer than that.
    config.outbox.lease = Duration::from_secs(15);
    config.notify = Some(NotifyConfig {
        receivers: vec![ReceiverConfig {
            name: "mail".into(),
            kind: ReceiverKind::Email(EmailConfig {
                smarthost: server.address.clone(),
                from: "GoMon <gomon@example.com>".into(),
                to: vec!["oncall@example.com".into(), "SRE <sre@example.com>".into()],
                ca_file: Some(pki.ca_file()),
                username: Some(USER.into()),
                password: Some(password.into()),
                hello: Some("gomon.test".into()),
                external_url: Some("http://alerting.local".into()),
                ..EmailConfig::default()
            }),
        }],
        routes: vec![RouteConfig {
            matchers: vec!["severity=\"P1\"".into()],
            receiver: "mail".into(),
            group_by: Some(vec!["...".into()]),
            ..RouteConfig::default()
        }],
    });
    config.slack = SlackConfig::default();
    config.check().expect("a valid configuration");
    config
}

/// An alert's lifecycle is four emails, each over TLS after AUTH, to both recipients, its subject saying what
/// happened, the later three threaded under the first by `In-Reply-To` and `References`.
async fn each_change_is_one_email_over_starttls_threaded_by_alert(backend: Backend) {
    let database = Database::new(backend).await;
    let slack = FakeSlack::start().await;
    let pki = Pki::generate();
    let smtp = SmtpServer::start(&pki);
    let server = Server::start_service(policy(&database, &slack, &pki, &smtp, PASSWORD)).await;
    let id = full_lifecycle(&server, "Disk full").await;
    let sent = format!("/api/v1/notifications?alert_id={id}&status=sent");
    eventually(
        Duration::from_secs(30),
        "four emails, marked sent",
        || async { smtp.mails().len() == 4 && server.get(&sent).await.1["total"] == 4 },
    )
    .await;
    let mails = smtp.mails();
    let subjects: Vec<String> = mails
        .iter()
        .map(|mail| mail.header("Subject").unwrap_or_default())
        .collect();
    assert_eq!(
        subjects,
        [
            "[P1] FIRING: Disk full",
            "[P1] ACKNOWLEDGED by alice: Disk full",
            "[P1] ASSIGNED to bob: Disk full",
            "[P1] RESOLVED: Disk full",
        ]
    );
    let thread = format!("<alert-{id}@example.com>");
    assert_eq!(mails[0].header("Message-ID"), Some(thread.clone()));
    for mail in &mails {
        assert!(mail.tls, "STARTTLS");
        assert_eq!(mail.user.as_deref(), Some(USER));
        assert_eq!(mail.mail_from, "gomon@example.com");
        assert_eq!(mail.rcpt_tos, ["oncall@example.com", "sre@example.com"]);
        assert!(
            mail.body()
                .contains(&format!("Alert: http://alerting.local/api/v1/alerts/{id}")),
            "{}",
            mail.raw
        );
    }
    for mail in &mails[1..] {
        assert_eq!(mail.header("In-Reply-To"), Some(thread.clone()));
        assert_eq!(mail.header("References"), Some(thread.clone()));
        assert_ne!(mail.header("Message-ID"), Some(thread.clone()));
    }
    assert!(
        mails[2].body().contains("Note: db team"),
        "{}",
        mails[2].raw
    );
    let (_, rows) = server
        .get(&format!("/api/v1/notifications?alert_id={id}"))
        .await;
    assert_eq!(rows["total"], 4, "{rows}");
    assert!(
        rows["notifications"].as_array().is_some_and(|rows| rows
            .iter()
            .all(|row| row["status"] == "sent" && row["receiver"] == "mail")),
        "{rows}"
    );
    server.stop().await;
}

/// With a wrong password the server refuses the login (535): permanent, so the notification is failed after
/// `max_attempts`, nothing is delivered, and `last_error` names the refusal without the password.
async fn a_refused_login_fails_the_email_without_leaking_the_password(backend: Backend) {
    let database = Database::new(backend).await;
    let slack = FakeSlack::start().await;
    let pki = Pki::generate();
    let smtp = SmtpServer::start(&pki);
    let wrong = "wrong-password-hunter2";
    let server = Server::start_service(policy(&database, &slack, &pki, &smtp, wrong)).await;
    let id = post_alert(&server, "P1", "Disk full").await;
    eventually(
        Duration::from_secs(15),
        "the notification failed",
        || async {
            let (_, rows) = server
                .get(&format!(
                    "/api/v1/notifications?alert_id={id}&status=failed"
                ))
                .await;
            rows["total"] == 1
        },
    )
    .await;
    let (_, rows) = server
        .get(&format!("/api/v1/notifications?alert_id={id}"))
        .await;
    let row = &rows["notifications"][0];
    let error = row["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("535"), "{row}");
    assert!(!error.contains("hunter2"), "{row}");
    assert_eq!(row["attempts"], 3, "{row}");
    assert!(smtp.mails().is_empty());
    server.stop().await;
}

/// A smarthost that accepts the connection and never says a word: the attempt ends as transient (retried later,
/// counted by the breaker) within the receiver's timeout, and holds nothing open after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_that_never_answers_costs_one_timeout() {
    use gomon_alerting::model::{NewAlert, Severity, now};
    use gomon_alerting::notify::email::EmailClient;
    use gomon_alerting::notify::slack::{Event, SendOutcome};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let client = EmailClient::new(&EmailConfig {
        smarthost: address.to_string(),
        from: "gomon@example.com".into(),
        to: vec!["oncall@example.com".into()],
        timeout: Duration::from_millis(300),
        ..EmailConfig::default()
    })
    .expect("client");
    let alert = NewAlert {
        source: "api".into(),
        severity: Severity::P1,
        title: "Disk full".into(),
        ..NewAlert::default()
    }
    .into_alert(now());
    let started = std::time::Instant::now();
    let outcome = client.send(1, &alert, Event::Created, None, None).await;
    let took = started.elapsed();
    assert!(
        matches!(outcome, SendOutcome::Transient { .. }),
        "{outcome:?}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    held.abort();
}
