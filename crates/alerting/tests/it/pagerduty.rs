//! The PagerDuty receiver end to end: the whole service against a stand-in that checks every event as PagerDuty's
//! Events API v2 does, on SQLite and PostgreSQL.

use std::time::Duration;

use crate::notifications::{config, eventually, full_lifecycle};
use crate::support::{Backend, Database, Server, post_alert};
use gomon_alerting::Config;
use gomon_alerting::notify::pagerduty::PagerDutyConfig;
use gomon_alerting::notify::policy::{
    EscalationStep, NotifyConfig, ReceiverConfig, ReceiverKind, RouteConfig,
};
use gomon_alerting::notify::slack::SlackConfig;
use gomon_testkit::pagerduty::{Behaviour, FakePagerDuty};
use gomon_testkit::slack::FakeSlack;
use serde_json::{Value, json};

on_both_stores!(
    an_alert_is_one_pagerduty_incident_triggered_acknowledged_and_resolved,
    an_escalation_to_pagerduty_hears_how_the_alert_ended,
);

const ROUTING_KEY: &str = "R0UT1NGKEY0123456789abcdefghijkl";

/// Receivers `team` (Slack) and `pager` (the stand-in); `routes` over them.
fn policy(
    database: &Database,
    team: &FakeSlack,
    pager: &FakePagerDuty,
    routes: Vec<RouteConfig>,
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
                name: "pager".into(),
                kind: ReceiverKind::PagerDuty(PagerDutyConfig {
                    routing_key: Some(ROUTING_KEY.into()),
                    url: pager.url.clone(),
                    timeout: Duration::from_millis(500),
                    external_url: Some("http://alerting.local".into()),
                    circuit_breaker: config.slack.circuit_breaker.clone(),
                    ..PagerDutyConfig::default()
                }),
            },
        ],
        routes,
    });
    config.slack = SlackConfig::default();
    config.check().expect("a valid configuration");
    config
}

/// The events PagerDuty accepted about alert `id` (by its `custom_details`, or by the dedup key of one that has
/// them): `(event_action, dedup_key)`.
fn events_of(pager: &FakePagerDuty, id: &str) -> Vec<(String, String)> {
    let accepted = pager.accepted();
    let keys: Vec<Value> = accepted
        .iter()
        .filter(|event| event["payload"]["custom_details"]["gomon_alert_id"] == id)
        .map(|event| event["dedup_key"].clone())
        .collect();
    accepted
        .iter()
        .filter(|event| keys.contains(&event["dedup_key"]))
        .map(|event| {
            (
                event["event_action"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                event["dedup_key"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// An alert routed to PagerDuty, during an outage (503) and after it: one incident, triggered, acknowledged and
/// resolved under one dedup key, every event valid; `assigned` sends nothing and is recorded as sent.
async fn an_alert_is_one_pagerduty_incident_triggered_acknowledged_and_resolved(backend: Backend) {
    let database = Database::new(backend).await;
    let team = FakeSlack::start().await;
    let pager = FakePagerDuty::start().await;
    let routes = vec![RouteConfig {
        matchers: vec!["severity=\"P1\"".into()],
        receiver: "pager".into(),
        group_by: Some(vec!["...".into()]),
        ..RouteConfig::default()
    }];
    let server = Server::start_service(policy(&database, &team, &pager, routes)).await;
    pager.set(Behaviour::Status(503));
    let id = full_lifecycle(&server, "Disk full").await;
    eventually(Duration::from_secs(5), "a refused attempt", || async {
        !pager.received().is_empty()
    })
    .await;
    pager.set(Behaviour::Accept);
    let sent = format!("/api/v1/notifications?alert_id={id}&status=sent");
    eventually(
        Duration::from_secs(15),
        "three events, four rows sent",
        || async { events_of(&pager, &id).len() == 3 && server.get(&sent).await.1["total"] == 4 },
    )
    .await;
    let events = events_of(&pager, &id);
    let actions: Vec<&str> = events.iter().map(|(action, _)| action.as_str()).collect();
    assert_eq!(actions, ["trigger", "acknowledge", "resolve"]);
    let (status, alert) = server.get(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(status, 200, "{alert}");
    assert!(
        events
            .iter()
            .all(|(_, key)| alert["alert_group_id"] == *key)
    );
    assert!(pager.problems().is_empty(), "{:?}", pager.problems());
    let trigger = pager
        .accepted()
        .into_iter()
        .find(|event| event["event_action"] == "trigger")
        .expect("a trigger");
    assert_eq!(trigger["routing_key"], ROUTING_KEY);
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["summary"], "[P1] Disk full");
    assert_eq!(
        trigger["client_url"],
        format!("http://alerting.local/api/v1/alerts/{id}")
    );
    let (_, rows) = server
        .get(&format!("/api/v1/notifications?alert_id={id}"))
        .await;
    assert_eq!(rows["total"], 4, "{rows}");
    for row in rows["notifications"].as_array().expect("rows") {
        assert_eq!(row["status"], "sent", "{row}");
        assert_eq!(row["receiver"], "pager", "{row}");
        assert!(
            row["last_error"]
                .as_str()
                .is_none_or(|error| !error.contains(ROUTING_KEY)),
            "{row}"
        );
    }
    assert!(team.received().is_empty());
    server.stop().await;
}

/// Slack for every alert, escalated to PagerDuty after 1 s unacknowledged. Alert A waits: PagerDuty is triggered
/// by the escalation, then hears A's acknowledgement and resolution. Alert B is acknowledged at once: PagerDuty
/// hears nothing of it.
async fn an_escalation_to_pagerduty_hears_how_the_alert_ended(backend: Backend) {
    let database = Database::new(backend).await;
    let team = FakeSlack::start().await;
    let pager = FakePagerDuty::start().await;
    let routes = vec![RouteConfig {
        receiver: "team".into(),
        escalation: vec![EscalationStep {
            after: Duration::from_secs(1),
            receivers: vec!["pager".into()],
        }],
        group_by: Some(vec!["...".into()]),
        ..RouteConfig::default()
    }];
    let server = Server::start_service(policy(&database, &team, &pager, routes)).await;
    let a = post_alert(&server, "P2", "Disk full").await;
    let b = post_alert(&server, "P2", "Node down").await;
    let change = |id: String, action: &'static str| {
        let server = &server;
        async move {
            let (status, body) = server
                .put(
                    &format!("/api/v1/alerts/{id}/{action}"),
                    json!({"by": "alice"}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
    };
    change(b.clone(), "acknowledge").await;
    eventually(Duration::from_secs(10), "A's escalation", || async {
        events_of(&pager, &a).len() == 1
    })
    .await;
    change(a.clone(), "acknowledge").await;
    change(a.clone(), "resolve").await;
    change(b.clone(), "resolve").await;
    eventually(Duration::from_secs(10), "A's end at PagerDuty", || async {
        events_of(&pager, &a).len() == 3
    })
    .await;
    let actions: Vec<String> = events_of(&pager, &a)
        .into_iter()
        .map(|(action, _)| action)
        .collect();
    assert_eq!(actions, ["trigger", "acknowledge", "resolve"]);
    let escalation = &pager.accepted()[0];
    assert_eq!(
        escalation["payload"]["custom_details"]["gomon_event"],
        "escalated"
    );
    assert!(pager.problems().is_empty(), "{:?}", pager.problems());
    // B's notifications all went to Slack alone.
    eventually(
        Duration::from_secs(5),
        "B's resolution in Slack",
        || async { team.accepted().len() >= 5 },
    )
    .await;
    let (_, rows) = server
        .get(&format!(
            "/api/v1/notifications?alert_id={b}&receiver=pager"
        ))
        .await;
    assert_eq!(rows["total"], 0, "{rows}");
    assert_eq!(pager.received().len(), 3);
    server.stop().await;
}
