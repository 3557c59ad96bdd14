//! Reminders and escalation: a route notifies a firing, unacknowledged alert again every `repeat_interval` and
//! escalates it to more receivers after its steps' `after`; acknowledging stops both. The whole service against a
//! fake Slack and a webhook receiver, with intervals of seconds, on SQLite and PostgreSQL; the state is in the
//! database, so it survives a restart, and two replicas send each reminder once.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::notifications::{alert_of, config, event_of, eventually};
use crate::support::{Backend, Database, Server, post_alert};
use gomon_alerting::Config;
use gomon_alerting::notify::policy::{
    EscalationStep, NotifyConfig, ReceiverConfig, ReceiverKind, RouteConfig,
};
use gomon_alerting::notify::slack::SlackConfig;
use gomon_alerting::notify::webhook::WebhookConfig;
use gomon_testkit::slack::FakeSlack;
use gomon_testkit::webhook::WebhookReceiver;
use serde_json::{Value, json};

on_both_stores!(
    unacknowledged_alerts_repeat_and_escalate_until_acknowledged,
    follow_ups_survive_a_restart_and_are_not_repeated_for_the_downtime,
    an_alert_that_stops_firing_leaves_no_follow_up_behind,
);

/// Acknowledging, resolving or deleting an alert removes its follow-ups in the same transaction, so that a storm of
/// alerts resolved at once leaves no rows to be looked at hours later; a firing alert keeps its own.
async fn an_alert_that_stops_firing_leaves_no_follow_up_behind(backend: Backend) {
    use gomon_alerting::model::{Change, NewAlert, Severity, now};
    let database = Database::new(backend).await;
    let store = gomon_alerting::Store::open(&database.config)
        .await
        .expect("store");
    let service = crate::support::notifying_to_slack(&store);
    let mut ids = Vec::new();
    for title in ["firing", "acknowledged", "resolved", "deleted"] {
        let new = NewAlert {
            source: "api".into(),
            severity: Severity::P1,
            title: title.into(),
            ..NewAlert::default()
        };
        ids.push(service.create(new, None).await.expect("create").0.id);
    }
    service
        .change(ids[1], Change::Acknowledge { by: None }, None)
        .await
        .expect("acknowledge");
    service
        .change(
            ids[2],
            Change::Resolve {
                by: None,
                note: None,
            },
            None,
        )
        .await
        .expect("resolve");
    service.delete(ids[3], None).await.expect("delete");
    // A day later every reminder is due: only the firing alert has one.
    let later = now() + chrono::Duration::days(1);
    let due = store
        .claim_followups(later, later + chrono::Duration::minutes(1), 100)
        .await
        .expect("claim");
    let alerts: Vec<_> = due.iter().map(|row| row.alert_id).collect();
    assert_eq!(alerts, [ids[0]]);
    assert_eq!(due[0].receiver, "slack");
    assert_eq!(due[0].route, None);
    store.close().await;
}

/// Slack receiver `team` for every alert, reminding every `repeat`, and one escalation step to the webhook
/// receiver `oncall` after `escalate`.
fn policy(
    database: &Database,
    team: &FakeSlack,
    oncall: &WebhookReceiver,
    repeat: Duration,
    escalate: Duration,
) -> Config {
    let mut config = config(database, team, false);
    let mut slack = config.slack.clone();
    slack.webhook_url = Some(team.webhook_url.clone().into());
    config.notify = Some(NotifyConfig {
        receivers: vec![
            ReceiverConfig {
                name: "team".into(),
                kind: ReceiverKind::Slack(slack),
            },
            ReceiverConfig {
                name: "oncall".into(),
                kind: ReceiverKind::Webhook(WebhookConfig {
                    url: Some(oncall.url.clone().into()),
                    timeout: Duration::from_millis(500),
                    ..WebhookConfig::default()
                }),
            },
        ],
        routes: vec![RouteConfig {
            receiver: "team".into(),
            repeat_interval: Some(repeat),
            escalation: vec![EscalationStep {
                after: escalate,
                receivers: vec!["oncall".into()],
            }],
            group_by: Some(vec!["...".into()]),
            ..RouteConfig::default()
        }],
    });
    config.slack = SlackConfig::default();
    config.check().expect("a valid configuration");
    config
}

async fn acknowledge(server: &Server, id: &str) {
    let (status, body) = server
        .put(
            &format!("/api/v1/alerts/{id}/acknowledge"),
            json!({"by": "alice"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Slack's accepted messages of alert `id`, by event, in arrival order.
fn events_of(team: &FakeSlack, id: &str) -> Vec<&'static str> {
    team.accepted()
        .iter()
        .filter(|message| alert_of(message) == id)
        .map(event_of)
        .collect()
}

/// The webhook payloads about alert `id`: their `gomon_event` annotations.
fn hook_events_of(hook: &WebhookReceiver, id: &str) -> Vec<String> {
    hook.accepted()
        .iter()
        .flat_map(|payload| payload["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|alert| alert["annotations"]["gomon_alert_id"] == id)
        .map(|alert| {
            alert["annotations"]["gomon_event"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// The audit trail of alert `id`: each entry's action, with its details.
async fn audit(server: &Server, id: &str) -> Vec<(String, Value)> {
    let (status, body) = server.get(&format!("/api/v1/alerts/{id}/actions")).await;
    assert_eq!(status, 200, "{body}");
    body["actions"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| {
            (
                entry["action"].as_str().unwrap_or_default().to_owned(),
                entry["details"].clone(),
            )
        })
        .collect()
}

fn count(events: &[&str], event: &str) -> usize {
    events.iter().filter(|e| **e == event).count()
}

/// Alert A stays unacknowledged: Slack gets it again every second, and the webhook receiver gets its escalation
/// after 2 s, once. Alert B is acknowledged at once: no reminder, no escalation. Once A is acknowledged, its
/// reminders stop, and the webhook receiver hears of the acknowledgement. The audit trail records each reminder and the escalation, and the webhook payload of the
/// escalation is valid.
async fn unacknowledged_alerts_repeat_and_escalate_until_acknowledged(backend: Backend) {
    let database = Database::new(backend).await;
    let team = FakeSlack::start().await;
    let oncall = WebhookReceiver::start().await;
    let config = policy(
        &database,
        &team,
        &oncall,
        Duration::from_secs(1),
        Duration::from_secs(2),
    );
    let server = Server::start_service(config).await;
    let a = post_alert(&server, "P1", "Disk full").await;
    let b = post_alert(&server, "P1", "Node down").await;
    acknowledge(&server, &b).await;
    eventually(
        Duration::from_secs(10),
        "A's escalation and two reminders",
        || async {
            hook_events_of(&oncall, &a) == ["escalated"]
                && count(&events_of(&team, &a), "repeated") >= 2
        },
    )
    .await;
    acknowledge(&server, &a).await;
    eventually(Duration::from_secs(5), "A's acknowledgement", || async {
        events_of(&team, &a).last() == Some(&"acknowledged")
    })
    .await;
    let repeats = count(&events_of(&team, &a), "repeated");
    // Longer than a reminder's interval and B's escalation: nothing more comes.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The receiver A was escalated to hears of its acknowledgement too; B never reached it.
    eventually(
        Duration::from_secs(5),
        "A's acknowledgement at oncall",
        || async { hook_events_of(&oncall, &a) == ["escalated", "acknowledged"] },
    )
    .await;
    let events = events_of(&team, &a);
    assert_eq!(events.first(), Some(&"created"), "{events:?}");
    assert_eq!(events.last(), Some(&"acknowledged"), "{events:?}");
    assert_eq!(count(&events, "repeated"), repeats, "{events:?}");
    assert_eq!(events.len(), repeats + 2, "{events:?}");
    assert_eq!(events_of(&team, &b), ["created", "acknowledged"]);
    assert_eq!(hook_events_of(&oncall, &a), ["escalated", "acknowledged"]);
    assert!(hook_events_of(&oncall, &b).is_empty());
    assert!(oncall.problems().is_empty(), "{:?}", oncall.problems());
    let reminder = team
        .accepted()
        .into_iter()
        .find(|message| alert_of(message) == a && event_of(message) == "repeated")
        .expect("a reminder");
    assert!(
        reminder.text.contains("STILL FIRING: Disk full"),
        "{}",
        reminder.text
    );
    assert!(
        reminder.blocks.to_string().contains("unacknowledged for"),
        "{}",
        reminder.blocks
    );
    let trail = audit(&server, &a).await;
    let reminders: Vec<&Value> = trail
        .iter()
        .filter(|(action, _)| action == "repeated")
        .map(|(_, details)| details)
        .collect();
    assert_eq!(reminders.len(), repeats, "{trail:?}");
    for (n, details) in reminders.iter().enumerate() {
        assert_eq!(details["repeat"], n + 1, "{trail:?}");
        assert_eq!(details["receiver"], "team", "{trail:?}");
    }
    let escalations: Vec<&Value> = trail
        .iter()
        .filter(|(action, _)| action == "escalated")
        .map(|(_, details)| details)
        .collect();
    assert_eq!(escalations.len(), 1, "{trail:?}");
    assert_eq!(escalations[0]["receivers"], json!(["oncall"]));
    assert_eq!(escalations[0]["step"], 1);
    assert_eq!(escalations[0]["after"], "2s");
    let trail_b: Vec<String> = audit(&server, &b)
        .await
        .into_iter()
        .map(|(action, _)| action)
        .collect();
    assert_eq!(trail_b, ["created", "acknowledged"]);
    let rows = server
        .get(&format!(
            "/api/v1/notifications?alert_id={a}&receiver=oncall"
        ))
        .await
        .1;
    // Newest first.
    assert_eq!(rows["total"], 2, "{rows}");
    assert_eq!(rows["notifications"][0]["event"], "acknowledged", "{rows}");
    assert_eq!(rows["notifications"][1]["event"], "escalated", "{rows}");
    assert_eq!(rows["notifications"][1]["route"], 0, "{rows}");
    assert_eq!(
        rows["notifications"][1]["payload"]["escalation_step"], 1,
        "{rows}"
    );
    let (_, reminders) = server
        .get(&format!("/api/v1/notifications?alert_id={a}&receiver=team"))
        .await;
    let numbers: Vec<&Value> = reminders["notifications"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|row| row["event"] == "repeated")
        .map(|row| &row["payload"]["repeat"])
        .collect();
    assert_eq!(numbers.len(), repeats, "{reminders}");
    assert!(numbers.contains(&&json!(1)), "{reminders}");
    server.stop().await;
}

/// The service stops right after an alert is notified and stays down past its first reminder (2 s) and its
/// escalation (3 s). Started again on the same database, it sends the reminder once (not once per missed
/// interval) and the escalation once.
async fn follow_ups_survive_a_restart_and_are_not_repeated_for_the_downtime(backend: Backend) {
    let database = Database::new(backend).await;
    let team = FakeSlack::start().await;
    let oncall = WebhookReceiver::start().await;
    let config = || {
        policy(
            &database,
            &team,
            &oncall,
            Duration::from_secs(2),
            Duration::from_secs(3),
        )
    };
    let first = Server::start_service(config()).await;
    let id = post_alert(&first, "P1", "Disk full").await;
    eventually(Duration::from_secs(5), "the first message", || async {
        events_of(&team, &id) == ["created"]
    })
    .await;
    first.stop().await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let second = Server::start_service(config()).await;
    eventually(
        Duration::from_secs(5),
        "the reminder and the escalation",
        || async {
            count(&events_of(&team, &id), "repeated") >= 1
                && hook_events_of(&oncall, &id) == ["escalated"]
        },
    )
    .await;
    // The next reminder is due 6 s after the alert began, about 2 s from now.
    assert_eq!(events_of(&team, &id), ["created", "repeated"]);
    let actions: BTreeMap<String, usize> =
        audit(&second, &id)
            .await
            .into_iter()
            .fold(BTreeMap::new(), |mut counts, (action, _)| {
                *counts.entry(action).or_default() += 1;
                counts
            });
    assert_eq!(
        actions,
        BTreeMap::from([
            ("created".to_owned(), 1),
            ("escalated".to_owned(), 1),
            ("repeated".to_owned(), 1)
        ])
    );
    second.stop().await;
}

/// Two replicas on one PostgreSQL, reminding every second for about five seconds: each reminder goes out once
/// (the audit trail numbers them 1, 2, 3… with no number twice), and Slack gets as many as the trail records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_send_each_reminder_once() {
    let database = Database::new(Backend::Postgres).await;
    let team = FakeSlack::start().await;
    let oncall = WebhookReceiver::start().await;
    let config = || {
        policy(
            &database,
            &team,
            &oncall,
            Duration::from_secs(1),
            Duration::from_secs(2),
        )
    };
    let one = Server::start_service(config()).await;
    let two = Server::start_service(config()).await;
    let id = post_alert(&one, "P1", "Disk full").await;
    tokio::time::sleep(Duration::from_millis(5300)).await;
    acknowledge(&two, &id).await;
    eventually(Duration::from_secs(5), "the acknowledgement", || async {
        events_of(&team, &id).last() == Some(&"acknowledged")
    })
    .await;
    let trail = audit(&one, &id).await;
    let numbers: Vec<u64> = trail
        .iter()
        .filter(|(action, _)| action == "repeated")
        .map(|(_, details)| details["repeat"].as_u64().unwrap_or_default())
        .collect();
    assert!(numbers.len() >= 4, "{trail:?}");
    assert_eq!(
        numbers,
        (1..=numbers.len() as u64).collect::<Vec<_>>(),
        "{trail:?}"
    );
    assert_eq!(count(&events_of(&team, &id), "repeated"), numbers.len());
    eventually(
        Duration::from_secs(5),
        "the escalation and its end, once each",
        || async { hook_events_of(&oncall, &id) == ["escalated", "acknowledged"] },
    )
    .await;
    one.stop().await;
    two.stop().await;
}
