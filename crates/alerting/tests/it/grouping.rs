//! Grouping end to end: the whole service with routes that group, against the webhook stand-in (which checks
//! Alertmanager's payload) and the fake Slack, on SQLite and PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::notifications::{config, eventually};
use crate::support::{Backend, Database, Server};
use gomon_alerting::Config;
use gomon_alerting::notify::dispatcher::OutboxConfig;
use gomon_alerting::notify::policy::{
    EscalationStep, NotifyConfig, ReceiverConfig, ReceiverKind, RouteConfig,
};
use gomon_alerting::notify::slack::SlackConfig;
use gomon_alerting::notify::webhook::WebhookConfig;
use gomon_testkit::slack::FakeSlack;
use gomon_testkit::webhook::WebhookReceiver;
use serde_json::{Value, json};

on_both_stores!(
    a_storm_is_a_handful_of_messages_per_group_naming_every_alert,
    a_restart_during_group_wait_loses_nothing,
    a_group_claimed_by_a_replica_that_died_goes_out_when_its_lease_ends,
    slack_lists_a_group_and_edits_it_in_place,
    acknowledgements_go_alone_and_at_once,
    reminders_and_escalations_of_a_group_go_together,
    a_group_refused_during_an_outage_is_retried_whole,
);

/// A configuration whose one route sends everything to `receiver` (a webhook to `hook`, or Slack's Web API on
/// `slack`), grouped by its default `group_by` (namespace), with `group_wait` and `group_interval`.
fn grouping(
    database: &Database,
    slack: &FakeSlack,
    hook: Option<&WebhookReceiver>,
    wait: Duration,
    interval: Duration,
) -> Config {
    let mut config = config(database, slack, true);
    let kind = match hook {
        Some(hook) => ReceiverKind::Webhook(WebhookConfig {
            url: Some(hook.url.clone().into()),
            timeout: Duration::from_secs(2),
            ..WebhookConfig::default()
        }),
        None => ReceiverKind::Slack(config.slack.clone()),
    };
    config.notify = Some(NotifyConfig {
        receivers: vec![ReceiverConfig {
            name: "team".into(),
            kind,
        }],
        routes: vec![RouteConfig {
            receiver: "team".into(),
            group_wait: Some(wait),
            group_interval: Some(interval),
            ..RouteConfig::default()
        }],
    });
    config.slack = SlackConfig::default();
    config.outbox = OutboxConfig {
        lease: Duration::from_secs(10),
        ..config.outbox
    };
    config.check().expect("a valid configuration");
    config
}

/// A database of `backend`, the Slack and webhook stand-ins, and the configuration of [`grouping`] to the webhook.
async fn to_webhook(
    backend: Backend,
    wait: Duration,
    interval: Duration,
) -> (Database, FakeSlack, WebhookReceiver, Config) {
    let database = Database::new(backend).await;
    let slack = FakeSlack::start().await;
    let hook = WebhookReceiver::start().await;
    let config = grouping(&database, &slack, Some(&hook), wait, interval);
    (database, slack, hook, config)
}

/// Alertmanager API alerts `first..last` of `namespace`, crash-looping pods.
fn pods(namespace: &str, range: std::ops::Range<usize>) -> Value {
    Value::Array(
        range
            .map(|index| {
                json!({
                    "labels": {
                        "alertname": "KubePodCrashLooping",
                        "namespace": namespace,
                        "pod": format!("worker-{index}"),
                        "severity": "critical",
                    },
                    "annotations": {"summary": format!("worker-{index} is crash looping")},
                })
            })
            .collect(),
    )
}

/// Annotation `name` of each alert of a webhook payload.
fn annotations(payload: &Value, name: &str) -> Vec<String> {
    payload["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|alert| alert["annotations"][name].as_str())
        .map(str::to_owned)
        .collect()
}

/// The alert ids a webhook payload names.
fn named(payload: &Value) -> Vec<String> {
    annotations(payload, "gomon_alert_id")
}

/// 1,000 alerts posted over 8 s in two namespaces: each namespace's alerts go out in a handful of payloads, and
/// every alert is in one of them, once.
async fn a_storm_is_a_handful_of_messages_per_group_naming_every_alert(backend: Backend) {
    let (_database, _slack, hook, config) =
        to_webhook(backend, Duration::from_secs(2), Duration::from_secs(3)).await;
    let server = Server::start_service(config).await;
    // 20 requests of 50 alerts, 400 ms apart: the storm lasts 8 s.
    for start in (0..500).step_by(50) {
        for namespace in ["payments", "orders"] {
            let (status, body) = server
                .post("/api/v2/alerts", pods(namespace, start..start + 50))
                .await;
            assert_eq!(status, 200, "{body}");
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }
    eventually(Duration::from_secs(60), "every alert notified", || async {
        let ids: BTreeSet<String> = hook.accepted().iter().flat_map(named).collect();
        ids.len() == 1000
    })
    .await;
    let payloads = hook.accepted();
    assert!(hook.problems().is_empty(), "{:?}", hook.problems());
    let mut per_group: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for payload in &payloads {
        let key = payload["groupKey"].as_str().expect("groupKey").to_owned();
        per_group.entry(key).or_default().push(payload);
    }
    assert_eq!(per_group.len(), 2, "one group per namespace: {per_group:?}");
    let sizes: Vec<(&String, Vec<usize>)> = per_group
        .iter()
        .map(|(key, payloads)| (key, payloads.iter().map(|p| named(p).len()).collect()))
        .collect();
    eprintln!("1,000 alerts in 8 s: alerts per message, by group: {sizes:?}");
    let mut named_twice = 0;
    let mut seen = BTreeSet::new();
    for (key, payloads) in &per_group {
        assert!(
            payloads.len() <= 5,
            "{key}: {} messages for 500 alerts",
            payloads.len()
        );
        let namespace = payloads[0]["groupLabels"]["namespace"]
            .as_str()
            .expect("grouped by namespace");
        for payload in payloads {
            assert_eq!(payload["groupLabels"], json!({"namespace": namespace}));
            assert_eq!(payload["commonLabels"]["namespace"], namespace);
            assert_eq!(payload["status"], "firing");
            assert_eq!(payload["truncatedAlerts"], 0);
            for id in named(payload) {
                named_twice += usize::from(!seen.insert(id));
            }
        }
    }
    assert_eq!(named_twice, 0, "an alert is in one message only");
    // The outbox shows each row's group.
    let (_, rows) = server.get("/api/v1/notifications?limit=1").await;
    assert!(
        rows["notifications"][0]["group_key"]
            .as_str()
            .is_some_and(|key| key.starts_with("0:{namespace=")),
        "{rows}"
    );
    server.stop().await;
}

/// The service stops while a group waits: the next one sends the group, whole, once.
async fn a_restart_during_group_wait_loses_nothing(backend: Backend) {
    let (_database, _slack, hook, config) =
        to_webhook(backend, Duration::from_secs(3), Duration::from_secs(60)).await;
    let first = Server::start_service(config.clone()).await;
    let (status, body) = first.post("/api/v2/alerts", pods("payments", 0..40)).await;
    assert_eq!(status, 200, "{body}");
    first.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(hook.received().is_empty(), "nothing sent before group_wait");
    let second = Server::start_service(config).await;
    eventually(Duration::from_secs(20), "the group's message", || async {
        !hook.accepted().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let payloads = hook.accepted();
    assert_eq!(payloads.len(), 1, "one message: {payloads:?}");
    let ids: BTreeSet<String> = named(&payloads[0]).into_iter().collect();
    assert_eq!(ids.len(), 40);
    second.stop().await;
}

/// A replica claims a group's notifications (leasing them, as its dispatcher does before sending) and dies before
/// sending: another replica sends the group once the lease ends, not before, every alert in one message.
async fn a_group_claimed_by_a_replica_that_died_goes_out_when_its_lease_ends(backend: Backend) {
    let (database, _slack, hook, config) =
        to_webhook(backend, Duration::from_secs(1), Duration::from_secs(60)).await;
    let first = Server::start_service(config.clone()).await;
    let (status, body) = first.post("/api/v2/alerts", pods("payments", 0..40)).await;
    assert_eq!(status, 200, "{body}");
    first.kill();
    // What the dead replica's dispatcher did last: it claimed the group, for three seconds.
    let store = gomon_alerting::Store::open(&database.config)
        .await
        .expect("store");
    // The POST was answered once queued; the writers, tasks of their own, go on storing it after the kill.
    eventually(
        Duration::from_secs(10),
        "40 notifications pending",
        || async { store.pending_notifications().await.expect("pending") == 40 },
    )
    .await;
    let horizon = gomon_alerting::model::now() + chrono::Duration::seconds(2);
    let groups = store.due_groups("team", horizon, 10).await.expect("groups");
    assert_eq!(groups.len(), 1, "{groups:?}");
    let claimed_at = std::time::Instant::now();
    let lease_until = gomon_alerting::model::now() + chrono::Duration::seconds(3);
    let claimed = store
        .claim_group("team", &groups[0], horizon, lease_until, 100)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 40);
    store.close().await;

    let second = Server::start_service(config).await;
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(claimed_at.elapsed())).await;
    assert!(
        hook.received().is_empty(),
        "nothing sent while the lease holds"
    );
    eventually(Duration::from_secs(20), "the group's message", || async {
        !hook.accepted().is_empty()
    })
    .await;
    assert!(claimed_at.elapsed() >= Duration::from_secs(3));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let payloads = hook.accepted();
    assert_eq!(payloads.len(), 1, "one message: {payloads:?}");
    let ids: BTreeSet<String> = named(&payloads[0]).into_iter().collect();
    assert_eq!(ids.len(), 40);
    second.stop().await;
}

/// The Slack message of a group lists its alerts (20 by name, the others counted); acknowledging one edits that
/// message and replies in its thread; their resolutions are one reply in the same thread.
async fn slack_lists_a_group_and_edits_it_in_place(backend: Backend) {
    let database = Database::new(backend).await;
    let slack = FakeSlack::start().await;
    let config = grouping(
        &database,
        &slack,
        None,
        Duration::from_secs(1),
        Duration::from_secs(2),
    );
    let server = Server::start_service(config).await;
    let (status, body) = server.post("/api/v2/alerts", pods("payments", 0..25)).await;
    assert_eq!(status, 200, "{body}");
    eventually(Duration::from_secs(10), "the group's message", || async {
        !slack.accepted().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let posted = slack.accepted();
    assert_eq!(posted.len(), 1, "one message for 25 alerts");
    let root = &posted[0];
    assert_eq!(root.thread_ts, None);
    assert!(
        root.text.contains("[FIRING:25] namespace=\"payments\""),
        "{}",
        root.text
    );
    let list = root.blocks[1]["text"]["text"].as_str().expect("the list");
    assert_eq!(list.matches("• [P1]").count(), 20, "{list}");
    assert!(
        list.contains("…and 5 more (5 firing, 0 resolved)"),
        "{list}"
    );
    let ts = root.ts.clone().expect("ts");

    let (_, page) = server
        .get("/api/v1/alerts?namespace=payments&limit=100")
        .await;
    let ids: Vec<String> = page["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|alert| alert["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 25);
    let (status, _) = server
        .put(
            &format!("/api/v1/alerts/{}/acknowledge", ids[0]),
            json!({"by": "alice"}),
        )
        .await;
    assert_eq!(status, 200);
    eventually(
        Duration::from_secs(10),
        "the reply in the thread",
        || async { slack.accepted().len() == 2 },
    )
    .await;
    let reply = &slack.accepted()[1];
    assert_eq!(reply.thread_ts.as_deref(), Some(ts.as_str()));
    assert!(
        reply.text.contains("ACKNOWLEDGED by alice"),
        "{}",
        reply.text
    );
    let edited = slack.message(&ts).expect("the group's message");
    let list = edited.blocks[1]["text"]["text"].as_str().expect("the list");
    assert!(list.contains("ACKNOWLEDGED by alice"), "{list}");
    assert!(
        edited.text.contains("[FIRING:25]"),
        "acknowledged alerts still fire: {}",
        edited.text
    );

    for id in &ids {
        let (status, _) = server
            .put_empty(&format!("/api/v1/alerts/{id}/resolve"))
            .await;
        assert_eq!(status, 200);
    }
    eventually(Duration::from_secs(15), "the resolutions", || async {
        slack.accepted().len() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let accepted = slack.accepted();
    assert_eq!(accepted.len(), 3, "one reply for 25 resolutions");
    let resolved = &accepted[2];
    assert_eq!(resolved.thread_ts.as_deref(), Some(ts.as_str()));
    assert!(resolved.text.contains("[RESOLVED:25]"), "{}", resolved.text);
    let edited = slack.message(&ts).expect("the group's message");
    assert!(edited.text.contains("[RESOLVED:25]"), "{}", edited.text);
    server.stop().await;
}

/// What a person does is not held by the group: an acknowledgement goes at once, even within `group_interval`.
async fn acknowledgements_go_alone_and_at_once(backend: Backend) {
    let (_database, _slack, hook, config) = to_webhook(
        backend,
        Duration::from_millis(500),
        Duration::from_secs(3600),
    )
    .await;
    let server = Server::start_service(config).await;
    let (status, body) = server.post("/api/v2/alerts", pods("payments", 0..2)).await;
    assert_eq!(status, 200, "{body}");
    eventually(Duration::from_secs(10), "the group's message", || async {
        hook.accepted().len() == 1
    })
    .await;
    let id = named(&hook.accepted()[0])[0].clone();
    let (status, _) = server
        .put(
            &format!("/api/v1/alerts/{id}/acknowledge"),
            json!({"by": "alice"}),
        )
        .await;
    assert_eq!(status, 200);
    eventually(Duration::from_secs(5), "the acknowledgement", || async {
        hook.accepted().len() == 2
    })
    .await;
    let ack = &hook.accepted()[1];
    assert_eq!(
        ack["alerts"][0]["annotations"]["gomon_event"],
        "acknowledged"
    );
    assert_eq!(ack["groupLabels"], json!({}));
    // A third alert joins the group: held until group_interval after the group's message.
    let (status, body) = server.post("/api/v2/alerts", pods("payments", 2..3)).await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hook.accepted().len(), 2, "held by group_interval");
    let (_, rows) = server.get("/api/v1/notifications?status=pending").await;
    assert_eq!(rows["total"], 1, "{rows}");
    server.stop().await;
}

/// Alerts of one group that stay unacknowledged are reminded, and escalated, together: one payload per group for
/// each round, naming them all.
async fn reminders_and_escalations_of_a_group_go_together(backend: Backend) {
    let (_database, _slack, team, mut config) =
        to_webhook(backend, Duration::from_millis(300), Duration::from_secs(1)).await;
    let oncall = WebhookReceiver::start().await;
    let notify = config.notify.as_mut().expect("notify");
    notify.receivers.push(ReceiverConfig {
        name: "oncall".into(),
        kind: ReceiverKind::Webhook(WebhookConfig {
            url: Some(oncall.url.clone().into()),
            timeout: Duration::from_secs(2),
            ..WebhookConfig::default()
        }),
    });
    notify.routes[0].repeat_interval = Some(Duration::from_secs(2));
    notify.routes[0].escalation = vec![EscalationStep {
        after: Duration::from_secs(1),
        receivers: vec!["oncall".into()],
    }];
    config.check().expect("a valid configuration");
    let server = Server::start_service(config).await;
    let (status, body) = server.post("/api/v2/alerts", pods("payments", 0..3)).await;
    assert_eq!(status, 200, "{body}");
    let events = |payload: &Value| annotations(payload, "gomon_event");
    eventually(Duration::from_secs(15), "the group's reminder", || async {
        team.accepted()
            .iter()
            .any(|payload| events(payload) == ["repeated"; 3])
    })
    .await;
    eventually(
        Duration::from_secs(15),
        "the group's escalation",
        || async { !oncall.accepted().is_empty() },
    )
    .await;
    let escalated = &oncall.accepted()[0];
    assert_eq!(events(escalated), ["escalated"; 3], "{escalated}");
    assert_eq!(escalated["groupLabels"], json!({"namespace": "payments"}));
    assert!(team.problems().is_empty() && oncall.problems().is_empty());
    assert_eq!(
        oncall.accepted().len(),
        1,
        "one escalation message for three alerts"
    );
    server.stop().await;
}

/// The webhook answers 503 while a group is due: the group's message is retried, its rows together, and once the
/// webhook is back every alert of the group arrives, in one message, none lost.
async fn a_group_refused_during_an_outage_is_retried_whole(backend: Backend) {
    use gomon_testkit::webhook::Behaviour;
    let (_database, _slack, hook, config) =
        to_webhook(backend, Duration::from_millis(300), Duration::from_secs(1)).await;
    hook.set(Behaviour::Status(503));
    let server = Server::start_service(config).await;
    let (status, body) = server.post("/api/v2/alerts", pods("payments", 0..30)).await;
    assert_eq!(status, 200, "{body}");
    eventually(Duration::from_secs(10), "refused attempts", || async {
        hook.received().len() >= 2
    })
    .await;
    let (_, rows) = server.get("/api/v1/notifications?status=pending").await;
    assert_eq!(rows["total"], 30, "every row still pending: {rows}");
    assert!(
        rows["notifications"]
            .as_array()
            .expect("rows")
            .iter()
            .all(|row| row["last_error"]
                .as_str()
                .is_some_and(|e| e.starts_with("HTTP 503"))),
        "{rows}"
    );
    hook.set(Behaviour::Accept);
    eventually(Duration::from_secs(20), "the group delivered", || async {
        !hook.accepted().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let accepted = hook.accepted();
    assert_eq!(accepted.len(), 1, "one message for the group");
    let ids: BTreeSet<String> = named(&accepted[0]).into_iter().collect();
    assert_eq!(ids.len(), 30);
    let (_, rows) = server.get("/api/v1/notifications?status=sent").await;
    assert_eq!(rows["total"], 30, "{rows}");
    server.stop().await;
}
