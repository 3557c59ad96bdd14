//! Notifications end to end: the whole service (`gomon_alerting::run`) with its outbox dispatcher, against a
//! local server speaking Slack's wire formats (incoming webhook and Web API), on SQLite and PostgreSQL.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::{Backend, Database, Server, alert, post_alert};
use gomon_alerting::Config;
use gomon_alerting::notify::breaker::BreakerConfig;
use gomon_alerting::notify::dispatcher::OutboxConfig;
use gomon_alerting::notify::slack::Route;
use gomon_testkit::slack::{Behaviour, FakeSlack, Received};
use serde_json::{Value, json};

on_both_stores!(
    webhook_delivers_every_change_in_order,
    web_api_threads_follow_ups_under_the_first_message,
    an_outage_opens_the_breaker_and_loses_nothing,
    a_restart_during_an_outage_loses_and_repeats_nothing,
    a_permanent_error_fails_without_blocking_others,
    retry_after_is_honoured,
    an_expired_lease_fences_the_old_holder_out,
    after_an_outage_the_urgent_alert_is_notified_first,
    a_receiver_that_is_down_delays_only_its_own_rows,
    a_webhook_that_is_down_delays_only_its_own_rows,
    a_webhook_refusing_with_4xx_is_not_retried_forever,
    rows_of_a_removed_receiver_wait_for_it,
    a_route_falls_back_while_its_receiver_is_down_and_delivers_late,
    a_route_falls_back_and_need_not_deliver_late,
);

/// A dispatcher whose lease ran out can neither renew nor record: the row belongs to whoever claimed it next.
async fn an_expired_lease_fences_the_old_holder_out(backend: Backend) {
    use gomon_alerting::model::{NewAlert, Severity, now};
    use gomon_alerting::store::DeliveryRecord;
    let database = Database::new(backend).await;
    let store = gomon_alerting::Store::open(&database.config)
        .await
        .expect("store");
    let service = crate::support::notifying_to_slack(&store);
    let new = NewAlert {
        source: "api".into(),
        severity: Severity::P1,
        title: "leased".into(),
        ..NewAlert::default()
    };
    service.create(new, None).await.expect("create");
    let start = now();
    let first = store
        .claim_due(
            start,
            start + chrono::Duration::milliseconds(1),
            10,
            "slack",
        )
        .await
        .expect("claim");
    assert_eq!(first.len(), 1);
    let held_first = first[0].next_attempt_at;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let later = now();
    let second = store
        .claim_due(later, later + chrono::Duration::seconds(30), 10, "slack")
        .await
        .expect("claim again");
    assert_eq!(second.len(), 1, "the expired lease made the row due again");
    let held_second = second[0].next_attempt_at;
    let sent = DeliveryRecord::Sent {
        at: now(),
        channel: None,
        ts: None,
    };
    assert!(
        !store
            .renew_lease(first[0].id, held_first, now())
            .await
            .expect("renew")
    );
    assert!(
        !store
            .finish_notification(first[0].id, held_first, &sent)
            .await
            .expect("finish")
    );
    assert!(
        store
            .finish_notification(second[0].id, held_second, &sent)
            .await
            .expect("finish")
    );
    assert!(
        !store
            .finish_notification(second[0].id, held_second, &sent)
            .await
            .expect("finish twice")
    );
    store.close().await;
}

/// A configuration for tests: fast retries and a breaker that opens after 3 failures for 300 ms.
pub(crate) fn config(database: &Database, fake: &FakeSlack, web_api: bool) -> Config {
    let mut config = Config::default();
    config.database = database.config.clone();
    if web_api {
        config.slack.bot_token = Some("xoxb-test-token".into());
        config.slack.api_url = fake.api_url.clone();
    } else {
        config.slack.webhook_url = Some(fake.webhook_url.clone().into());
    }
    config.slack.timeout = Duration::from_millis(500);
    config.slack.public_url = Some("http://alerting.local".into());
    config.slack.circuit_breaker = BreakerConfig {
        failure_threshold: 3,
        timeout_duration: Duration::from_millis(300),
        half_open_max_requests: 1,
    };
    config.outbox = OutboxConfig {
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        poll_interval: Duration::from_millis(50),
        lease: Duration::from_secs(2),
        max_attempts: 3,
        ..OutboxConfig::default()
    };
    config
}

/// Polls `check` until it holds, for at most `limit`.
pub(crate) async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Waits until the service's Slack circuit breaker is open.
async fn breaker_opens(server: &Server) {
    eventually(Duration::from_secs(10), "the breaker to open", || async {
        server
            .metrics()
            .await
            .contains("alerting_circuit_breaker_state 1")
    })
    .await;
}

/// The alert id a message links to (its "View alert" button).
pub(crate) fn alert_of(message: &Received) -> String {
    let blocks = message.blocks.to_string();
    let start = blocks
        .find("/api/v1/alerts/")
        .map(|i| i + "/api/v1/alerts/".len());
    start
        .and_then(|i| blocks.get(i..i + 36))
        .unwrap_or_else(|| panic!("no alert link in {blocks}"))
        .to_owned()
}

/// The event a message announces.
pub(crate) fn event_of(message: &Received) -> &'static str {
    for (word, event) in [
        ("STILL FIRING", "repeated"),
        ("ESCALATED", "escalated"),
        ("FIRING", "created"),
        ("ACKNOWLEDGED", "acknowledged"),
        ("ASSIGNED", "assigned"),
        ("RESOLVED", "resolved"),
    ] {
        if message.text.contains(word) {
            return event;
        }
    }
    panic!("no event in {:?}", message.text)
}

/// Accepted messages per alert, in arrival order.
fn by_alert(messages: &[Received]) -> BTreeMap<String, Vec<&'static str>> {
    let mut map: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    for message in messages {
        map.entry(alert_of(message))
            .or_default()
            .push(event_of(message));
    }
    map
}

async fn notifications(server: &Server, query: &str) -> Value {
    let (status, body) = server.get(&format!("/api/v1/notifications?{query}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn total(server: &Server, status: &str) -> u64 {
    notifications(server, &format!("status={status}")).await["total"]
        .as_u64()
        .unwrap_or_default()
}

/// Creates an alert and walks it through acknowledge, assign and resolve; returns its id.
pub(crate) async fn full_lifecycle(server: &Server, title: &str) -> String {
    let (status, created) = server
        .post(
            "/api/v1/alerts",
            json!({"source": "api", "severity": "P1", "title": title}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(
        server
            .put(
                &format!("/api/v1/alerts/{id}/acknowledge"),
                json!({"by": "alice"})
            )
            .await
            .0,
        200
    );
    assert_eq!(
        server
            .put(
                &format!("/api/v1/alerts/{id}/assign"),
                json!({"assigned_to": "bob", "note": "db team"})
            )
            .await
            .0,
        200
    );
    assert_eq!(
        server
            .put_empty(&format!("/api/v1/alerts/{id}/resolve"))
            .await
            .0,
        200
    );
    id
}

const LIFECYCLE: [&str; 4] = ["created", "acknowledged", "assigned", "resolved"];

async fn webhook_delivers_every_change_in_order(backend: Backend) {
    let database = Database::new(backend).await;
    let fake = FakeSlack::start().await;
    let server = Server::start_service(config(&database, &fake, false)).await;
    let id = full_lifecycle(&server, "Kafka broker down").await;
    // The outbox marks a row sent after Slack accepted it: wait for both.
    eventually(
        Duration::from_secs(10),
        "four deliveries, marked sent",
        || async { fake.accepted().len() == 4 && total(&server, "sent").await == 4 },
    )
    .await;
    let accepted = fake.accepted();
    assert_eq!(by_alert(&accepted)[&id], LIFECYCLE);
    let first = &accepted[0];
    assert_eq!(first.via, "webhook");
    assert!(
        first.text.contains("Kafka broker down") && first.text.contains("P1"),
        "{}",
        first.text
    );
    let blocks = first.blocks.to_string();
    assert!(
        blocks.contains("header") && blocks.contains("http://alerting.local/api/v1/alerts/"),
        "{blocks}"
    );
    assert!(
        accepted[2].blocks.to_string().contains("db team"),
        "the assignment note is shown"
    );
    assert_eq!(total(&server, "sent").await, 4);
    assert_eq!(total(&server, "pending").await, 0);
    let text = server.metrics().await;
    assert!(
        text.contains(r#"alerting_slack_notifications_total{status="success"} 4"#),
        "{text}"
    );
    assert!(
        text.contains("alerting_notification_outbox_pending 0"),
        "{text}"
    );
    assert!(
        text.contains("alerting_notification_delivery_seconds_count 4"),
        "{text}"
    );
    assert!(text.contains("alerting_circuit_breaker_state 0"), "{text}");
    server.stop().await;
}

async fn web_api_threads_follow_ups_under_the_first_message(backend: Backend) {
    let database = Database::new(backend).await;
    let fake = FakeSlack::start().await;
    let mut config = config(&database, &fake, true);
    config.slack.routes = vec![
        Route {
            severities: vec![gomon_alerting::model::Severity::P1],
            channel: "#critical".into(),
        },
        Route {
            severities: vec![gomon_alerting::model::Severity::P3],
            channel: "#alerts".into(),
        },
    ];
    let server = Server::start_service(config).await;
    let id = full_lifecycle(&server, "Postgres primary unreachable").await;
    let (_, p3) = server
        .post(
            "/api/v1/alerts",
            json!({"source": "api", "severity": "P3", "title": "disk 80%"}),
        )
        .await;
    let (_, p2) = server
        .post(
            "/api/v1/alerts",
            json!({"source": "api", "severity": "P2", "title": "not routed"}),
        )
        .await;
    eventually(Duration::from_secs(10), "five deliveries", || async {
        fake.accepted().len() == 5
    })
    .await;
    let accepted = fake.accepted();
    let lifecycle: Vec<&Received> = accepted.iter().filter(|m| alert_of(m) == id).collect();
    assert_eq!(lifecycle.len(), 4);
    let first_ts = lifecycle[0]
        .ts
        .clone()
        .expect("chat.postMessage answered a ts");
    assert_eq!(
        lifecycle[0].thread_ts, None,
        "the first message starts the thread"
    );
    assert_eq!(lifecycle[0].channel.as_deref(), Some("#critical"));
    for follow_up in &lifecycle[1..] {
        assert_eq!(
            follow_up.thread_ts.as_deref(),
            Some(first_ts.as_str()),
            "threaded under the first"
        );
    }
    assert_eq!(
        lifecycle[0].authorization.as_deref(),
        Some("Bearer xoxb-test-token")
    );
    // The first message was edited at each change (chat.update), and now shows the end: resolved.
    let updates = fake.updates();
    let edits: Vec<&str> = updates
        .iter()
        .filter(|u| u.ts.as_deref() == Some(first_ts.as_str()))
        .map(event_of)
        .collect();
    assert_eq!(edits, ["acknowledged", "assigned", "resolved"]);
    let now_shows = fake.message(&first_ts).expect("the first message");
    assert_eq!(event_of(&now_shows), "resolved", "{}", now_shows.text);
    assert!(now_shows.blocks.to_string().contains("resolved"));
    let p3_message = accepted
        .iter()
        .find(|m| alert_of(m) == p3["id"].as_str().expect("id"))
        .expect("P3 sent");
    assert_eq!(
        p3_message.channel.as_deref(),
        Some("#alerts"),
        "routed by severity"
    );
    assert!(
        accepted
            .iter()
            .all(|m| alert_of(m) != p2["id"].as_str().expect("id")),
        "P2 is not routed"
    );
    let sent = notifications(&server, &format!("alert_id={id}")).await;
    assert_eq!(sent["total"], 4);
    assert!(
        sent["notifications"]
            .as_array()
            .expect("rows")
            .iter()
            .all(|n| n["slack_ts"].is_string())
    );
    server.stop().await;
}

async fn an_outage_opens_the_breaker_and_loses_nothing(backend: Backend) {
    let database = Database::new(backend).await;
    let fake = FakeSlack::start().await;
    fake.set(Behaviour::ServerError);
    let server = Server::start_service(config(&database, &fake, false)).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(full_lifecycle(&server, &format!("outage alert {i}")).await);
    }
    breaker_opens(&server).await;
    assert!(
        total(&server, "pending").await > 0,
        "undelivered notifications wait in the outbox"
    );
    let requests_while_open = fake.requests();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        fake.requests(),
        requests_while_open,
        "nothing is sent while the breaker is open"
    );
    // Creating and changing alerts never waits for Slack nor fails because of it.
    let started = Instant::now();
    let (status, _) = server
        .post("/api/v1/alerts", alert("during the outage"))
        .await;
    assert_eq!(status, 201);
    assert!(started.elapsed() < Duration::from_secs(1));

    fake.set(Behaviour::Ok);
    eventually(
        Duration::from_secs(15),
        "every notification delivered",
        || async { total(&server, "sent").await == 13 },
    )
    .await;
    let accepted = fake.accepted();
    assert_eq!(accepted.len(), 13, "each notification exactly once");
    let per_alert = by_alert(&accepted);
    for id in &ids {
        assert_eq!(per_alert[id], LIFECYCLE, "in order for alert {id}");
    }
    let text = server.metrics().await;
    assert!(
        text.contains("alerting_circuit_breaker_state 0"),
        "closed again: {text}"
    );
    assert!(
        text.contains(r#"alerting_slack_notifications_total{status="failure"}"#),
        "{text}"
    );
    assert!(
        text.contains("alerting_notification_outbox_pending 0"),
        "{text}"
    );
    server.stop().await;
}

/// 500 P4 alerts wait in the outbox while Slack is down; a P1 raised after them is the first message once Slack is
/// back.
async fn after_an_outage_the_urgent_alert_is_notified_first(backend: Backend) {
    let database = Database::new(backend).await;
    let fake = FakeSlack::start().await;
    fake.set(Behaviour::ServerError);
    let mut config = config(&database, &fake, false);
    // The first failure opens the breaker, long enough for the P1 to be written while nothing is attempted.
    config.slack.circuit_breaker = BreakerConfig {
        failure_threshold: 1,
        timeout_duration: Duration::from_millis(1500),
        half_open_max_requests: 1,
    };
    let server = Server::start_service(config).await;
    let low: Vec<Value> = (0..500)
        .map(|i| json!({"labels": {"alertname": "Low", "severity": "info", "n": i.to_string()}}))
        .collect();
    let (status, body) = server.post("/api/v2/alerts", json!(low)).await;
    assert_eq!(status, 200, "{body}");
    breaker_opens(&server).await;
    let (status, urgent) = server
        .post(
            "/api/v1/alerts",
            json!({"source": "api", "severity": "P1", "title": "urgent"}),
        )
        .await;
    assert_eq!(status, 201, "{urgent}");
    let urgent = urgent["id"].as_str().expect("id").to_owned();
    assert_eq!(total(&server, "pending").await, 501);
    fake.set(Behaviour::Ok);
    eventually(Duration::from_secs(15), "a delivery", || async {
        !fake.accepted().is_empty()
    })
    .await;
    let first = &fake.accepted()[0];
    assert_eq!(alert_of(first), urgent, "first message: {}", first.text);
    eventually(
        Duration::from_secs(60),
        "every notification delivered",
        || async { total(&server, "sent").await == 501 },
    )
    .await;
    server.stop().await;
}

async fn a_restart_during_an_outage_loses_and_repeats_nothing(backend: Backend) {
    let database = Database::new(backend).await;
    let fake = FakeSlack::start().await;
    fake.set(Behaviour::ServerError);
    let first = Server::start_service(config(&database, &fake, false)).await;
    let mut ids = Vec::new();
    for i in 0..2 {
        ids.push(full_lifecycle(&first, &format!("restart alert {i}")).await);
    }
    eventually(Duration::from_secs(10), "failed attempts", || async {
        fake.requests() >= 3
    })
    .await;
    first.stop().await;

    fake.set(Behaviour::Ok);
    let second = Server::start_service(config(&database, &fake, false)).await;
    eventually(Duration::from_secs(15), "the backlog delivered", || async {
        fake.accepted().len() >= 8 && total(&second, "pending").await == 0
    })
    .await;
    let accepted = fake.accepted();
    assert_eq!(accepted.len(), 8, "nothing lost, nothing twice");
    let per_alert = by_alert(&accepted);
    for id in &ids {
        assert_eq!(per_alert[id], LIFECYCLE);
    }
    second.stop().await;
}

async fn a_permanent_error_fails_without_blocking_others(backend: Backend) {
    let database = Database::new(backend).await;
    let fake = FakeSlack::start().await;
    fake.set_for_channel("#gone", Behaviour::ApiError("channel_not_found"));
    let mut config = config(&database, &fake, true);
    config.slack.routes = vec![
        Route {
            severities: vec![gomon_alerting::model::Severity::P1],
            channel: "#gone".into(),
        },
        Route {
            severities: vec![gomon_alerting::model::Severity::P3],
            channel: "#alerts".into(),
        },
    ];
    let server = Server::start_service(config).await;
    let (_, broken) = server
        .post(
            "/api/v1/alerts",
            json!({"source": "api", "severity": "P1", "title": "to nowhere"}),
        )
        .await;
    let (_, fine) = server
        .post(
            "/api/v1/alerts",
            json!({"source": "api", "severity": "P3", "title": "to #alerts"}),
        )
        .await;
    eventually(
        Duration::from_secs(10),
        "the P1 notification to fail",
        || async { total(&server, "failed").await == 1 },
    )
    .await;
    let failed = notifications(&server, "status=failed").await;
    let row = &failed["notifications"][0];
    assert_eq!(row["alert_id"], broken["id"]);
    assert_eq!(row["attempts"], 3, "max_attempts tries");
    assert!(
        row["last_error"]
            .as_str()
            .expect("reason")
            .contains("channel_not_found"),
        "{row}"
    );
    eventually(Duration::from_secs(5), "the P3 notification", || async {
        fake.accepted()
            .iter()
            .any(|m| alert_of(m) == fine["id"].as_str().unwrap_or_default())
    })
    .await;
    let text = server.metrics().await;
    assert!(
        text.contains("alerting_notifications_failed_total 1"),
        "{text}"
    );
    assert!(
        text.contains("alerting_circuit_breaker_state 0"),
        "our own bad request does not open it: {text}"
    );
    server.stop().await;
}

async fn retry_after_is_honoured(backend: Backend) {
    let database = Database::new(backend).await;
    let fake = FakeSlack::start().await;
    fake.set(Behaviour::RateLimited {
        retry_after_secs: 1,
    });
    let server = Server::start_service(config(&database, &fake, false)).await;
    let started = Instant::now();
    assert_eq!(
        server.post("/api/v1/alerts", alert("rate limited")).await.0,
        201
    );
    eventually(Duration::from_secs(5), "the first attempt", || async {
        fake.requests() >= 1
    })
    .await;
    fake.set(Behaviour::Ok);
    eventually(
        Duration::from_secs(10),
        "delivery after Retry-After",
        || async { fake.accepted().len() == 1 },
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After: {:?}",
        started.elapsed()
    );
    assert_eq!(fake.requests(), 2, "one refused attempt, then one accepted");
    server.stop().await;
}

/// Two replicas on one PostgreSQL deliver each notification once, and one keeps delivering when the other is
/// killed in the middle of its work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_outbox_and_survive_a_kill() {
    let database = Database::new(Backend::Postgres).await;
    let fake = FakeSlack::start().await;
    fake.set(Behaviour::Slow(Duration::from_millis(40)));
    let a = Server::start_service(config(&database, &fake, false)).await;
    let b = Server::start_service(config(&database, &fake, false)).await;
    for i in 0..10 {
        let via = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            via.post("/api/v1/alerts", alert(&format!("replicated {i}")))
                .await
                .0,
            201
        );
    }
    eventually(Duration::from_secs(15), "ten deliveries", || async {
        total(&b, "sent").await == 10
    })
    .await;
    let accepted = fake.accepted();
    assert_eq!(
        accepted.len(),
        10,
        "each notification once across both replicas"
    );

    for i in 0..10 {
        assert_eq!(
            b.post("/api/v1/alerts", alert(&format!("after the kill {i}")))
                .await
                .0,
            201
        );
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    a.kill();
    eventually(
        Duration::from_secs(20),
        "the survivor delivers everything",
        || async { total(&b, "sent").await == 20 },
    )
    .await;
    let accepted = fake.accepted();
    let distinct: std::collections::BTreeSet<String> = accepted.iter().map(alert_of).collect();
    assert_eq!(distinct.len(), 20, "every alert notified");
    // A message Slack accepted just as its replica died, before the replica could record it, is sent again by
    // the survivor: at most the one delivery in flight at the kill.
    assert!(
        accepted.len() <= 21,
        "{} deliveries for 20 notifications",
        accepted.len()
    );
    b.stop().await;
}

/// Two alerts through their whole lifecycle while receiver `down` is cut off: Slack receiver `team` gets its eight
/// messages within 3 s, and `down`'s breaker opens while `team`'s stays closed. The two alerts' ids.
async fn lifecycles_while_down(server: &Server, team: &FakeSlack, down: &str) -> (String, String) {
    let started = Instant::now();
    let first = full_lifecycle(server, "Disk full").await;
    let second = full_lifecycle(server, "Node down").await;
    eventually(Duration::from_secs(5), "team's eight messages", || async {
        team.accepted().len() == 8
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "team waited for {down}: {:?}",
        started.elapsed()
    );
    eventually(Duration::from_secs(10), "the breaker to open", || async {
        receiver_status(server, down).await["breaker"]["state"] == "open"
    })
    .await;
    assert_eq!(
        receiver_status(server, "team").await["breaker"]["state"],
        "closed"
    );
    (first, second)
}

/// The status of receiver `name` in `GET /api/v1/notifications/status`.
async fn receiver_status(server: &Server, name: &str) -> Value {
    let (status, body) = server.get("/api/v1/notifications/status").await;
    assert_eq!(status, 200, "{body}");
    body["receivers"]
        .as_array()
        .and_then(|receivers| receivers.iter().find(|r| r["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no receiver {name} in {body}"))
}

/// Two receivers by `alerting.notify`: `team` straight to one Slack, `ops` to another behind a proxy. While the
/// proxy is cut, `team` gets every message on time and `ops`'s breaker opens without touching `team`'s; once the
/// proxy is back, `ops` gets every message too, in order for each alert, and nothing is lost.
async fn a_receiver_that_is_down_delays_only_its_own_rows(backend: Backend) {
    use gomon_alerting::notify::policy::{NotifyConfig, ReceiverConfig, ReceiverKind, RouteConfig};
    use gomon_alerting::notify::slack::SlackConfig;
    let database = Database::new(backend).await;
    let team = FakeSlack::start().await;
    let ops = FakeSlack::start().await;
    let (proxy, via_proxy) = gomon_testkit::proxy::Proxy::in_front_of(&ops.webhook_url).await;
    let mut config = config(&database, &team, false);
    let slack = |url: String| {
        let mut slack = config.slack.clone();
        slack.webhook_url = Some(url.into());
        ReceiverKind::Slack(slack)
    };
    config.notify = Some(NotifyConfig {
        receivers: vec![
            ReceiverConfig {
                name: "team".into(),
                kind: slack(team.webhook_url.clone()),
            },
            ReceiverConfig {
                name: "ops".into(),
                kind: slack(via_proxy.clone()),
            },
        ],
        routes: vec![
            RouteConfig {
                matchers: vec!["severity=~\"P1|P2\"".into()],
                receiver: "team".into(),
                continue_matching: true,
                group_by: Some(vec!["...".into()]),
                ..RouteConfig::default()
            },
            RouteConfig {
                matchers: vec!["source=\"api\"".into()],
                receiver: "ops".into(),
                continue_matching: false,
                group_by: Some(vec!["...".into()]),
                ..RouteConfig::default()
            },
        ],
    });
    config.slack = SlackConfig::default();
    config.check().expect("a valid configuration");
    proxy.cut();
    let server = Server::start_service(config).await;
    let (first, second) = lifecycles_while_down(&server, &team, "ops").await;
    assert_eq!(ops.requests(), 0);
    assert_eq!(receiver_status(&server, "ops").await["pending"], 8);
    let waiting = notifications(&server, "receiver=ops&status=pending").await;
    assert_eq!(waiting["total"], 8, "{waiting}");
    assert_eq!(receiver_status(&server, "team").await["pending"], 0);
    // A change made during the outage reaches team at once, and ops later.
    let (status, third) = server
        .post(
            "/api/v1/alerts",
            json!({"source": "api", "severity": "P2", "title": "Late"}),
        )
        .await;
    assert_eq!(status, 201, "{third}");
    eventually(Duration::from_secs(5), "team's ninth message", || async {
        team.accepted().len() == 9
    })
    .await;
    proxy.restore();
    eventually(
        Duration::from_secs(15),
        "ops's nine messages, marked sent",
        || async {
            ops.accepted().len() == 9 && receiver_status(&server, "ops").await["pending"] == 0
        },
    )
    .await;
    for fake in [&team, &ops] {
        let accepted = by_alert(&fake.accepted());
        assert_eq!(accepted[&first], LIFECYCLE);
        assert_eq!(accepted[&second], LIFECYCLE);
        assert_eq!(accepted[third["id"].as_str().expect("id")], ["created"]);
    }
    let rows = notifications(&server, &format!("alert_id={first}")).await;
    let mut routes: Vec<(String, Value)> = rows["notifications"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            assert_eq!(row["status"], "sent", "{row}");
            (
                row["receiver"].as_str().unwrap_or_default().to_owned(),
                row["route"].clone(),
            )
        })
        .collect();
    routes.sort_by(|a, b| a.0.cmp(&b.0));
    routes.dedup();
    assert_eq!(
        routes,
        [("ops".to_owned(), json!(1)), ("team".to_owned(), json!(0))]
    );
    assert_eq!(total(&server, "failed").await, 0);
    server.stop().await;
}

/// Slack (`team`) and an Alertmanager webhook (`hook`, behind a proxy) by `alerting.notify`. While the webhook's
/// endpoint refuses connections, Slack gets every message on time; once it is back, the webhook gets every
/// notification, each a valid version 4 payload, in order for each alert, none lost.
async fn a_webhook_that_is_down_delays_only_its_own_rows(backend: Backend) {
    use gomon_alerting::notify::policy::{NotifyConfig, ReceiverConfig, ReceiverKind, RouteConfig};
    use gomon_alerting::notify::slack::SlackConfig;
    use gomon_alerting::notify::webhook::WebhookConfig;
    use gomon_testkit::webhook::WebhookReceiver;
    let database = Database::new(backend).await;
    let team = FakeSlack::start().await;
    let hook = WebhookReceiver::start().await;
    let (proxy, via_proxy) = gomon_testkit::proxy::Proxy::in_front_of(&hook.url).await;
    let mut config = config(&database, &team, false);
    let mut slack = config.slack.clone();
    slack.webhook_url = Some(team.webhook_url.clone().into());
    config.notify = Some(NotifyConfig {
        receivers: vec![
            ReceiverConfig {
                name: "team".into(),
                kind: ReceiverKind::Slack(slack),
            },
            ReceiverConfig {
                name: "hook".into(),
                kind: ReceiverKind::Webhook(WebhookConfig {
                    url: Some(via_proxy.clone().into()),
                    bearer_token: Some("hook-token".into()),
                    timeout: Duration::from_millis(500),
                    external_url: Some("http://alerting.local".into()),
                    circuit_breaker: config.slack.circuit_breaker.clone(),
                    ..WebhookConfig::default()
                }),
            },
        ],
        routes: vec![
            RouteConfig {
                matchers: Vec::new(),
                receiver: "team".into(),
                continue_matching: true,
                group_by: Some(vec!["...".into()]),
                ..RouteConfig::default()
            },
            RouteConfig {
                matchers: vec!["namespace!=\"dev\"".into()],
                receiver: "hook".into(),
                continue_matching: false,
                group_by: Some(vec!["...".into()]),
                ..RouteConfig::default()
            },
        ],
    });
    config.slack = SlackConfig::default();
    config.check().expect("a valid configuration");
    proxy.cut();
    let server = Server::start_service(config).await;
    let (first, second) = lifecycles_while_down(&server, &team, "hook").await;
    let status = receiver_status(&server, "hook").await;
    assert_eq!(status["type"], "webhook");
    assert_eq!(status["pending"], 8);
    assert!(
        status["last_error"]["message"]
            .as_str()
            .is_some_and(|message| !message.contains("hook-token")),
        "{status}"
    );
    assert!(hook.received().is_empty());
    proxy.restore();
    eventually(Duration::from_secs(15), "hook's eight payloads", || async {
        hook.accepted().len() == 8
    })
    .await;
    assert!(hook.problems().is_empty(), "{:?}", hook.problems());
    assert!(
        hook.received()
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer hook-token"))
    );
    let mut events: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for payload in hook.accepted() {
        let alert = &payload["alerts"][0];
        assert_eq!(payload["receiver"], "hook");
        events
            .entry(
                alert["annotations"]["gomon_alert_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
            .or_default()
            .push(
                alert["annotations"]["gomon_event"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        let resolved = alert["annotations"]["gomon_event"] == "resolved";
        assert_eq!(
            alert["status"],
            if resolved { "resolved" } else { "firing" },
            "{payload}"
        );
    }
    assert_eq!(events[&first], LIFECYCLE);
    assert_eq!(events[&second], LIFECYCLE);
    // The receiver has answered the last payload; the dispatcher records it as sent just after.
    eventually(
        Duration::from_secs(10),
        "every row recorded sent",
        || async { total(&server, "pending").await == 0 },
    )
    .await;
    assert_eq!(total(&server, "failed").await, 0);
    server.stop().await;
}

/// A webhook that answers 400 to everything: each notification is tried `max_attempts` times, then failed with
/// the answer as its error, and the breaker stays closed (the receiver answers; the fault is ours).
async fn a_webhook_refusing_with_4xx_is_not_retried_forever(backend: Backend) {
    use gomon_alerting::notify::policy::{NotifyConfig, ReceiverConfig, ReceiverKind, RouteConfig};
    use gomon_alerting::notify::slack::SlackConfig;
    use gomon_alerting::notify::webhook::WebhookConfig;
    use gomon_testkit::webhook::{Behaviour as HookBehaviour, WebhookReceiver};
    let database = Database::new(backend).await;
    let unused = FakeSlack::start().await;
    let hook = WebhookReceiver::start().await;
    hook.set(HookBehaviour::Status(400));
    let mut config = config(&database, &unused, false);
    config.notify = Some(NotifyConfig {
        receivers: vec![ReceiverConfig {
            name: "hook".into(),
            kind: ReceiverKind::Webhook(WebhookConfig {
                url: Some(hook.url.clone().into()),
                timeout: Duration::from_millis(500),
                ..WebhookConfig::default()
            }),
        }],
        routes: vec![RouteConfig {
            receiver: "hook".into(),
            group_by: Some(vec!["...".into()]),
            ..RouteConfig::default()
        }],
    });
    config.slack = SlackConfig::default();
    config.check().expect("a valid configuration");
    let server = Server::start_service(config).await;
    let (status, created) = server
        .post(
            "/api/v1/alerts",
            json!({"source": "api", "severity": "P3", "title": "Refused"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    eventually(
        Duration::from_secs(10),
        "the notification to fail",
        || async { total(&server, "failed").await == 1 },
    )
    .await;
    let rows = notifications(&server, "status=failed").await;
    let row = &rows["notifications"][0];
    assert_eq!(row["receiver"], "hook");
    assert_eq!(row["route"], 0);
    assert_eq!(row["attempts"], 3);
    assert!(
        row["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("HTTP 400")),
        "{row}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        hook.received().len(),
        3,
        "tried max_attempts times, no more"
    );
    assert!(hook.problems().is_empty(), "{:?}", hook.problems());
    assert_eq!(
        receiver_status(&server, "hook").await["breaker"]["state"],
        "closed"
    );
    server.stop().await;
}

/// Rows pending for a receiver that a restart removes from the configuration are neither lost nor sent elsewhere:
/// the status lists them under their receiver, unconfigured, and they go out once a receiver of that name is back.
async fn rows_of_a_removed_receiver_wait_for_it(backend: Backend) {
    use gomon_alerting::notify::policy::{NotifyConfig, ReceiverConfig, ReceiverKind, RouteConfig};
    use gomon_alerting::notify::slack::SlackConfig;
    use gomon_alerting::notify::webhook::WebhookConfig;
    use gomon_testkit::webhook::WebhookReceiver;
    let database = Database::new(backend).await;
    let fake = FakeSlack::start().await;
    fake.set(Behaviour::ServerError);
    let first = Server::start_service(config(&database, &fake, false)).await;
    let (status, created) = first
        .post(
            "/api/v1/alerts",
            json!({"source": "api", "severity": "P1", "title": "Waits for Slack"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    eventually(Duration::from_secs(10), "a failed attempt", || async {
        fake.requests() >= 1
    })
    .await;
    first.stop().await;

    let hook = WebhookReceiver::start().await;
    let mut only_hook = config(&database, &fake, false);
    only_hook.slack = SlackConfig::default();
    only_hook.notify = Some(NotifyConfig {
        receivers: vec![ReceiverConfig {
            name: "hook".into(),
            kind: ReceiverKind::Webhook(WebhookConfig {
                url: Some(hook.url.clone().into()),
                ..WebhookConfig::default()
            }),
        }],
        routes: vec![RouteConfig {
            receiver: "hook".into(),
            group_by: Some(vec!["...".into()]),
            ..RouteConfig::default()
        }],
    });
    let second = Server::start_service(only_hook).await;
    let (status, _) = second
        .post(
            "/api/v1/alerts",
            json!({"source": "api", "severity": "P2", "title": "Goes to the hook"}),
        )
        .await;
    assert_eq!(status, 201);
    eventually(
        Duration::from_secs(10),
        "the hook's payload, marked sent",
        || async {
            hook.accepted().len() == 1 && receiver_status(&second, "hook").await["pending"] == 0
        },
    )
    .await;
    let waiting = receiver_status(&second, "slack").await;
    assert_eq!(waiting["configured"], false, "{waiting}");
    assert_eq!(waiting["pending"], 1, "{waiting}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        hook.accepted().len(),
        1,
        "the Slack row is not sent to the hook"
    );
    second.stop().await;

    fake.set(Behaviour::Ok);
    let third = Server::start_service(config(&database, &fake, false)).await;
    eventually(
        Duration::from_secs(10),
        "the waiting row delivered",
        || async { fake.accepted().len() == 1 && total(&third, "pending").await == 0 },
    )
    .await;
    assert_eq!(
        alert_of(&fake.accepted()[0]),
        created["id"].as_str().expect("id")
    );
    third.stop().await;
}

/// `team` (Slack, behind a proxy that is cut) takes P1 alerts with a fallback to the webhook `hook` after 1 s of
/// failing. Both alerts made during the outage (one before the fallback is due, one after) reach `hook`, each once;
/// P3 alerts of another route do not. Once the proxy is back, `team` gets them too when `deliver_late`, and
/// otherwise never: their rows there are failed, naming the fallback.
async fn falls_back(backend: Backend, deliver_late: bool) {
    use gomon_alerting::notify::policy::{
        FallbackConfig, NotifyConfig, ReceiverConfig, ReceiverKind, RouteConfig,
    };
    use gomon_alerting::notify::slack::SlackConfig;
    use gomon_alerting::notify::webhook::WebhookConfig;
    use gomon_testkit::webhook::WebhookReceiver;
    let database = Database::new(backend).await;
    let team = FakeSlack::start().await;
    let hook = WebhookReceiver::start().await;
    let (proxy, via_proxy) = gomon_testkit::proxy::Proxy::in_front_of(&team.webhook_url).await;
    let mut config = config(&database, &team, false);
    let mut slack = config.slack.clone();
    slack.webhook_url = Some(via_proxy.clone().into());
    config.notify = Some(NotifyConfig {
        receivers: vec![
            ReceiverConfig {
                name: "team".into(),
                kind: ReceiverKind::Slack(slack),
            },
            ReceiverConfig {
                name: "hook".into(),
                kind: ReceiverKind::Webhook(WebhookConfig {
                    url: Some(hook.url.clone().into()),
                    timeout: Duration::from_millis(500),
                    ..WebhookConfig::default()
                }),
            },
        ],
        routes: vec![
            RouteConfig {
                matchers: vec!["severity=\"P1\"".into()],
                receiver: "team".into(),
                fallback: Some(FallbackConfig {
                    receiver: "hook".into(),
                    after: Duration::from_secs(1),
                    deliver_late,
                }),
                group_by: Some(vec!["...".into()]),
                ..RouteConfig::default()
            },
            RouteConfig {
                receiver: "team".into(),
                group_by: Some(vec!["...".into()]),
                ..RouteConfig::default()
            },
        ],
    });
    config.slack = SlackConfig::default();
    config.check().expect("a valid configuration");
    proxy.cut();
    let server = Server::start_service(config).await;
    let first = post_alert(&server, "P1", "Disk full").await;
    let minor = post_alert(&server, "P3", "Disk filling").await;
    breaker_opens(&server).await;
    eventually(
        Duration::from_secs(10),
        "the first alert at the fallback",
        || async { hook.accepted().len() == 1 },
    )
    .await;
    let second = post_alert(&server, "P1", "Node down").await;
    eventually(
        Duration::from_secs(10),
        "the second alert at the fallback",
        || async { hook.accepted().len() == 2 },
    )
    .await;
    let ids: Vec<String> = hook
        .accepted()
        .iter()
        .map(|payload| {
            payload["alerts"][0]["annotations"]["gomon_alert_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, [first.clone(), second.clone()]);
    assert!(hook.problems().is_empty(), "{:?}", hook.problems());
    proxy.restore();
    let expected = if deliver_late { 3 } else { 1 };
    eventually(Duration::from_secs(15), "team's messages", || async {
        team.accepted().len() == expected
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut reached: Vec<String> = team.accepted().iter().map(alert_of).collect();
    reached.sort();
    let mut wanted = if deliver_late {
        vec![first.clone(), second.clone(), minor.clone()]
    } else {
        vec![minor.clone()]
    };
    wanted.sort();
    assert_eq!(reached, wanted);
    assert_eq!(hook.accepted().len(), 2, "each alert once at the fallback");
    let rows = notifications(&server, &format!("alert_id={first}&receiver=team")).await;
    let row = &rows["notifications"][0];
    if deliver_late {
        assert_eq!(row["status"], "sent", "{row}");
    } else {
        assert_eq!(row["status"], "failed", "{row}");
        assert_eq!(
            row["last_error"], "handed over to the fallback receiver hook",
            "{row}"
        );
    }
    server.stop().await;
}

async fn a_route_falls_back_while_its_receiver_is_down_and_delivers_late(backend: Backend) {
    falls_back(backend, true).await;
}

async fn a_route_falls_back_and_need_not_deliver_late(backend: Backend) {
    falls_back(backend, false).await;
}
