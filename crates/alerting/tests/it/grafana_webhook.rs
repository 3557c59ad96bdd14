//! `POST /api/v1/webhooks/grafana`: Grafana's webhook contact point payload (fixtures in the form Grafana's
//! documentation gives, firing then resolved) opens and resolves alerts.

use crate::support;
use crate::support::{Backend, Database, Server};
use gomon_alerting::api::{Access, ApiToken};
use serde_json::{Value, json};

on_both_stores!(
    firing_then_resolved_payload_opens_and_resolves,
    one_bad_alert_costs_only_itself,
    bearer_token_is_required_when_configured,
);

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/grafana")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture JSON")
}

async fn grafana_alerts(server: &Server) -> Vec<Value> {
    let (status, page) = server.get("/api/v1/alerts?source=grafana").await;
    assert_eq!(status, 200, "{page}");
    page["alerts"].as_array().cloned().unwrap_or_default()
}

fn named<'a>(alerts: &'a [Value], alertname: &str) -> &'a Value {
    alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == alertname)
        .unwrap_or_else(|| panic!("no {alertname} among {alerts:?}"))
}

async fn firing_then_resolved_payload_opens_and_resolves(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db.config, vec![]).await;
    let (status, body) = server
        .post("/api/v1/webhooks/grafana", fixture("firing.json"))
        .await;
    assert_eq!(status, 200, "{body}");
    let alerts = grafana_alerts(&server).await;
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let lag = named(&alerts, "KafkaConsumerLag");
    assert_eq!(lag["status"], "firing");
    assert_eq!(lag["severity"], "P1");
    assert_eq!(lag["title"], "KafkaConsumerLag: Lag is 18234 messages");
    assert_eq!(lag["namespace"], "monitoring");
    assert_eq!(lag["labels"]["topic"], "events");
    assert_eq!(
        lag["annotations"]["dashboardURL"],
        "https://grafana.example.com/d/kafka-overview?orgId=1"
    );
    assert_eq!(
        lag["annotations"]["runbook_url"],
        "https://runbooks.example.com/kafka-lag"
    );
    assert_eq!(lag["annotations"]["grafanaFingerprint"], "8b5a1f1d3c2e7a90");
    let disk = named(&alerts, "DiskAlmostFull");
    assert_eq!(disk["severity"], "P3");
    assert!(disk["annotations"].get("panelURL").is_none(), "{disk}");
    let (lag_id, disk_id) = (lag["id"].clone(), disk["id"].clone());

    // The same notification again (Grafana's repeat interval) changes nothing but updated_at.
    let (status, _) = server
        .post("/api/v1/webhooks/grafana", fixture("firing.json"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(grafana_alerts(&server).await.len(), 2);

    let (status, body) = server
        .post("/api/v1/webhooks/grafana", fixture("resolved.json"))
        .await;
    assert_eq!(status, 200, "{body}");
    let alerts = grafana_alerts(&server).await;
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let lag = named(&alerts, "KafkaConsumerLag");
    assert_eq!(lag["id"], lag_id);
    assert_eq!(lag["status"], "resolved");
    let disk = named(&alerts, "DiskAlmostFull");
    assert_eq!(disk["id"], disk_id);
    assert_eq!(disk["status"], "firing");
    assert_eq!(disk["title"], "DiskAlmostFull: Root file system 93% full");

    // A resolved notification repeated resolves nothing more.
    let (status, _) = server
        .post("/api/v1/webhooks/grafana", fixture("resolved.json"))
        .await;
    assert_eq!(status, 200);
    let (_, actions) = server
        .get(&format!(
            "/api/v1/alerts/{}/actions",
            lag_id.as_str().expect("id")
        ))
        .await;
    let kinds: Vec<&str> = actions["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    assert_eq!(kinds, ["created", "resolved"]);
    server.stop().await;
}

async fn one_bad_alert_costs_only_itself(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db.config, vec![]).await;
    let mut payload = fixture("firing.json");
    let sent = payload["alerts"].as_array().expect("alerts").len();
    payload["alerts"][1]["status"] = json!("pending");
    let (status, body) = server.post("/api/v1/webhooks/grafana", payload).await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().expect("error");
    assert!(
        error.contains("alerts[1]") && error.contains("pending"),
        "{error}"
    );
    assert_eq!(
        body["details"]["invalid"][0]["reason"], "unknown_status",
        "{body}"
    );
    assert_eq!(body["details"]["stored"], sent - 1, "{body}");
    assert_eq!(grafana_alerts(&server).await.len(), sent - 1);
    let mut payload = fixture("firing.json");
    payload["alerts"][0]["labels"] = json!(["not", "a", "map"]);
    let (status, body) = server.post("/api/v1/webhooks/grafana", payload).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["details"]["invalid"][0]["index"], 0, "{body}");
    assert_eq!(
        body["details"]["invalid"][0]["reason"], "malformed",
        "{body}"
    );
    assert!(
        body["details"]["invalid"][0]["message"]
            .as_str()
            .expect("message")
            .contains("labels"),
        "{body}"
    );
    let (status, body) = server
        .post("/api/v1/webhooks/grafana", json!({"receiver": "x"}))
        .await;
    assert_eq!(status, 400, "{body}");
    server.stop().await;
}

async fn bearer_token_is_required_when_configured(backend: Backend) {
    let db = Database::new(backend).await;
    let tokens = vec![
        ApiToken {
            name: "dashboards".into(),
            token: "read-secret".into(),
            access: Access::Read,
        },
        ApiToken {
            name: "grafana".into(),
            token: "grafana-secret".into(),
            access: Access::Admin,
        },
    ];
    let server = Server::start(&db.config, tokens).await;
    let url = server.url("/api/v1/webhooks/grafana");
    let send = |token: Option<&'static str>| {
        let mut request = server.client.post(&url).json(&fixture("firing.json"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(send(None).await.expect("POST").status(), 401);
    assert_eq!(send(Some("read-secret")).await.expect("POST").status(), 403);
    assert_eq!(
        send(Some("grafana-secret")).await.expect("POST").status(),
        200
    );
    let (status, page) = support::read(
        server
            .client
            .get(server.url("/api/v1/alerts?source=grafana"))
            .bearer_auth("read-secret")
            .send()
            .await
            .expect("GET"),
    )
    .await;
    assert_eq!(status, 200);
    let alerts = page["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 2);
    assert!(alerts.iter().all(|a| a["status"] == "firing"));
    server.stop().await;
}
