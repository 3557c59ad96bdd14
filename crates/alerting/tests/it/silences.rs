//! Silences of the Alertmanager API v2: the API, muting of notifications, and amtool as a client of the alerts and
//! silences API.

use std::process::Command;

use crate::support::{Backend, Database, Server};
use gomon_alerting::model::{Change, NewAlert, Severity};
use gomon_alerting::silence::{Matcher, PostableSilence};
use gomon_alerting::store::NotificationFilter;
use gomon_alerting::{AlertService, Store};
use serde_json::{Value, json};

on_both_stores!(
    silences_round_trip_and_mark_alerts_suppressed,
    a_silenced_alert_is_stored_but_not_notified,
    amtool_adds_and_queries_alerts_and_silences,
    silences_expired_past_their_retention_are_deleted,
    an_expensive_filter_is_refused_and_a_heavy_one_stalls_nothing,
);

async fn silences_expired_past_their_retention_are_deleted(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db.config, vec![]).await;
    let now = chrono::Utc::now();
    for (name, ended_days_ago) in [("old", 8), ("recent", 1)] {
        let mut body =
            silence_body(json!([{"name": "alertname", "value": name, "isRegex": false}]));
        body["startsAt"] = json!((now - chrono::Duration::days(ended_days_ago + 1)).to_rfc3339());
        body["endsAt"] = json!((now - chrono::Duration::days(ended_days_ago)).to_rfc3339());
        let (status, answer) = server.post("/api/v2/silences", body).await;
        assert_eq!(status, 200, "{answer}");
    }
    // The test server sweeps every 200 ms, with the default retention of 7 days.
    let mut kept = Vec::new();
    for _ in 0..50 {
        let (_, silences) = server.get("/api/v2/silences").await;
        kept = silences
            .as_array()
            .expect("silences")
            .iter()
            .map(|s| {
                s["matchers"][0]["value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        if kept.len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(kept, ["recent"]);
    server.stop().await;
}

/// A regular expression too large to compile within the limit is a 400; a heavy but allowed one over 2,000 open
/// alerts answers, and `/health/live` keeps answering meanwhile.
async fn an_expensive_filter_is_refused_and_a_heavy_one_stalls_nothing(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db.config, vec![]).await;
    let alerts: Vec<Value> = (0..2000)
        .map(|i| json!({"labels": {"alertname": "Many", "instance": format!("node-{i:05}.example:9100")}}))
        .collect();
    for chunk in alerts.chunks(500) {
        let (status, body) = server.post("/api/v2/alerts", json!(chunk)).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = server
        .get("/api/v2/alerts?filter=instance%3D~%22%5Cw%7B100%7D%22")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("regular expression"),
        "{body}"
    );
    let heavy = "/api/v2/alerts?filter=instance%3D~%22%5Cw%7B10%7D.*%22";
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let client = server.client.clone();
            let url = server.url(heavy);
            tokio::spawn(async move { client.get(url).send().await.expect("GET").status() })
        })
        .collect();
    let live = server
        .client
        .get(server.url("/health/live"))
        .send()
        .await
        .expect("live");
    assert!(live.status().is_success());
    for request in requests {
        assert_eq!(request.await.expect("request").as_u16(), 200);
    }
    let (status, matched) = server.get(heavy).await;
    assert_eq!(status, 200);
    assert_eq!(
        matched.as_array().expect("alerts").len(),
        0,
        "`node-` has a `-` within 10 characters"
    );
    let (_, all) = server
        .get("/api/v2/alerts?filter=instance%3D~%22node-%5Cd%7B5%7D.*%22")
        .await;
    assert_eq!(all.as_array().expect("alerts").len(), 2000);
    // Listed a page of 1,000 at a time: an alert kept only on the second page, then none.
    let last = "filter=instance%3D%22node-01999.example%3A9100%22";
    let (_, one) = server.get(&format!("/api/v2/alerts?{last}")).await;
    assert_eq!(one.as_array().expect("alerts").len(), 1, "{one}");
    let (_, groups) = server.get(&format!("/api/v2/alerts/groups?{last}")).await;
    assert_eq!(groups.as_array().expect("groups").len(), 1, "{groups}");
    assert_eq!(
        groups[0]["alerts"].as_array().expect("alerts").len(),
        1,
        "{groups}"
    );
    let (_, none) = server
        .get("/api/v2/alerts/groups?filter=instance%3D%22x%22")
        .await;
    assert_eq!(none, json!([]));
    server.stop().await;
}

fn silence_body(matchers: Value) -> Value {
    json!({
        "matchers": matchers,
        "startsAt": chrono::Utc::now().to_rfc3339(),
        "endsAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
        "createdBy": "ann",
        "comment": "maintenance of node-1",
    })
}

async fn silences_round_trip_and_mark_alerts_suppressed(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db.config, vec![]).await;
    let ends = (chrono::Utc::now() + chrono::Duration::minutes(5)).to_rfc3339();
    let (status, _) = server
        .post(
            "/api/v2/alerts",
            json!([
                {"labels": {"alertname": "HighCPU", "instance": "node-1:9100"}, "endsAt": ends},
                {"labels": {"alertname": "HighCPU", "instance": "node-2:9100"}, "endsAt": ends},
            ]),
        )
        .await;
    assert_eq!(status, 200);
    let (status, created) = server
        .post(
            "/api/v2/silences",
            silence_body(json!([
                {"name": "alertname", "value": "HighCPU", "isRegex": false, "isEqual": true},
                {"name": "instance", "value": "node-1.*", "isRegex": true, "isEqual": true},
            ])),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["silenceID"].as_str().expect("silenceID").to_owned();

    let (_, silences) = server.get("/api/v2/silences").await;
    let silences = silences.as_array().expect("array");
    assert_eq!(silences.len(), 1);
    assert_eq!(silences[0]["id"], id.as_str());
    assert_eq!(silences[0]["status"]["state"], "active");
    let (status, one) = server.get(&format!("/api/v2/silence/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(one["createdBy"], "ann");

    let (_, alerts) = server.get("/api/v2/alerts").await;
    let alerts = alerts.as_array().expect("array");
    assert_eq!(alerts.len(), 2);
    let node1 = alerts
        .iter()
        .find(|a| a["labels"]["instance"] == "node-1:9100")
        .expect("node-1");
    assert_eq!(node1["status"]["state"], "suppressed");
    assert_eq!(node1["status"]["silencedBy"], json!([id]));
    let (_, unsilenced) = server.get("/api/v2/alerts?silenced=false").await;
    let unsilenced = unsilenced.as_array().expect("array");
    assert_eq!(unsilenced.len(), 1);
    assert_eq!(unsilenced[0]["labels"]["instance"], "node-2:9100");
    let (_, by_regex) = server
        .get("/api/v2/alerts?filter=instance%3D~%22node-2.%2A%22")
        .await;
    assert_eq!(by_regex.as_array().expect("array").len(), 1);

    let response = server
        .client
        .delete(server.url(&format!("/api/v2/silence/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status(), 200);
    let (_, one) = server.get(&format!("/api/v2/silence/{id}")).await;
    assert_eq!(one["status"]["state"], "expired");
    let (_, unsilenced) = server.get("/api/v2/alerts?silenced=false").await;
    assert_eq!(unsilenced.as_array().expect("array").len(), 2);

    for (body, field) in [
        (silence_body(json!([])), "matchers"),
        (
            silence_body(json!([{"name": "a", "value": "(", "isRegex": true}])),
            "matchers[0].value",
        ),
    ] {
        let (status, error) = server.post("/api/v2/silences", body).await;
        assert_eq!(status, 400, "{error}");
        assert!(
            error["error"].as_str().expect("error").contains(field),
            "{error}"
        );
    }
    let missing = uuid::Uuid::new_v4();
    let response = server
        .client
        .delete(server.url(&format!("/api/v2/silence/{missing}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status(), 404);
    server.stop().await;
}

fn new_alert(title: &str) -> NewAlert {
    NewAlert {
        source: "api".into(),
        severity: Severity::P1,
        title: title.into(),
        labels: [("team".to_owned(), "db".to_owned())].into(),
        ..NewAlert::default()
    }
}

async fn notified(service: &AlertService, alert_id: uuid::Uuid) -> Vec<String> {
    let filter = NotificationFilter {
        alert_id: Some(alert_id),
        limit: 100,
        ..NotificationFilter::default()
    };
    let (rows, _) = service.notifications(&filter).await.expect("notifications");
    rows.into_iter().map(|n| n.event).collect()
}

async fn a_silenced_alert_is_stored_but_not_notified(backend: Backend) {
    let db = Database::new(backend).await;
    let store = Store::open(&db.config).await.expect("store");
    let service = crate::support::notifying_to_slack(&store);
    let now = chrono::Utc::now();
    let silence = service
        .post_silence(
            PostableSilence {
                id: None,
                matchers: vec![Matcher::parse("alertname=~\"Disk.*\"").expect("matcher")],
                starts_at: now,
                ends_at: now + chrono::Duration::hours(1),
                created_by: "ann".into(),
                comment: "disks are being replaced".into(),
            },
            None,
        )
        .await
        .expect("silence");

    let (muted, created) = service
        .create(new_alert("DiskFull"), None)
        .await
        .expect("create");
    assert!(created);
    let (loud, _) = service
        .create(new_alert("HighCPU"), None)
        .await
        .expect("create");
    assert_eq!(
        service.get(muted.id).await.expect("stored").title,
        "DiskFull"
    );
    assert!(notified(&service, muted.id).await.is_empty());
    assert_eq!(notified(&service, loud.id).await, ["created"]);
    let ack = Change::Acknowledge { by: None };
    service
        .change(muted.id, ack.clone(), None)
        .await
        .expect("acknowledge");
    assert!(notified(&service, muted.id).await.is_empty());

    service.expire_silence(silence, None).await.expect("expire");
    let resolve = Change::Resolve {
        by: None,
        note: None,
    };
    service
        .change(muted.id, resolve, None)
        .await
        .expect("resolve");
    assert_eq!(notified(&service, muted.id).await, ["resolved"]);
    store.close().await;
}

/// Runs amtool against `server`; returns its standard output, failing the test if it fails.
fn amtool(server: &Server, args: &[&str]) -> String {
    let output = Command::new("amtool")
        .arg(format!("--alertmanager.url={}", server.base))
        .args(args)
        .output()
        .expect("amtool is required (apt-get install prometheus-alertmanager)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "amtool {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

async fn amtool_adds_and_queries_alerts_and_silences(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db.config, vec![]).await;
    let (s, a) = (
        &server,
        ["alert", "add", "alertname=AmtoolTest", "severity=warning"],
    );
    let add = [&a[..], &["--annotation=summary=added by amtool"]].concat();
    tokio::task::block_in_place(|| amtool(s, &add));
    let (_, page) = server.get("/api/v1/alerts?source=alertmanager").await;
    let alerts = page["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 1, "{page}");
    assert_eq!(alerts[0]["title"], "AmtoolTest: added by amtool");
    assert_eq!(alerts[0]["severity"], "P3");

    let queried = tokio::task::block_in_place(|| {
        amtool(s, &["alert", "query", "-o", "json", "alertname=AmtoolTest"])
    });
    let queried: Value = serde_json::from_str(&queried).expect("amtool JSON");
    assert_eq!(queried.as_array().map(Vec::len), Some(1), "{queried}");
    assert_eq!(queried[0]["labels"]["severity"], "warning");

    let id = tokio::task::block_in_place(|| {
        amtool(
            s,
            &[
                "silence",
                "add",
                "alertname=AmtoolTest",
                "--comment=planned work",
                "--author=tester",
                "--duration=1h",
            ],
        )
    });
    let id = id.trim().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id:?}");
    let silences = tokio::task::block_in_place(|| amtool(s, &["silence", "query", "-o", "json"]));
    let silences: Value = serde_json::from_str(&silences).expect("amtool JSON");
    assert_eq!(silences[0]["id"], id.as_str(), "{silences}");
    assert_eq!(silences[0]["createdBy"], "tester");
    // The alert is silenced now: amtool's default query leaves it out.
    let queried = tokio::task::block_in_place(|| amtool(s, &["alert", "query", "-o", "json"]));
    let queried: Value = serde_json::from_str(&queried).expect("amtool JSON");
    assert_eq!(queried.as_array().map(Vec::len), Some(0), "{queried}");

    tokio::task::block_in_place(|| amtool(s, &["silence", "expire", &id]));
    let (_, silence) = server.get(&format!("/api/v2/silence/{id}")).await;
    assert_eq!(silence["status"]["state"], "expired");
    let active = tokio::task::block_in_place(|| amtool(s, &["silence", "query", "-q"]));
    assert!(active.trim().is_empty(), "{active:?}");

    // amtool reads GoMon's configuration as Alertmanager's: one route, to the receiver gomon.
    let routes = tokio::task::block_in_place(|| amtool(s, &["config", "routes", "show"]));
    assert!(routes.contains("gomon"), "{routes}");
    let config = tokio::task::block_in_place(|| amtool(s, &["config", "show"]));
    assert!(config.contains("resolve_timeout: 5m"), "{config}");
    server.stop().await;
}
