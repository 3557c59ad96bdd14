//! The API suite, run against both stores: every test here runs once on SQLite and once on PostgreSQL.

use crate::support;
use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::{Backend, Database, Server, alert};
use gomon_alerting::api::{Access, ApiToken};
use serde_json::{Value, json};

on_both_stores!(
    create_returns_the_stored_alert,
    duplicates_return_the_open_alert,
    concurrent_duplicates_collapse_into_one,
    listing_filters_and_counts,
    listing_pages_by_offset_and_cursor,
    lifecycle_and_audit_trail,
    illegal_changes_are_conflicts,
    delete_keeps_the_audit_trail,
    bad_input_is_refused_clearly,
    a_nul_byte_is_an_invalid_field_not_a_server_error,
    made_up_methods_and_sources_do_not_grow_the_metrics,
    hostile_requests_never_get_a_5xx,
    tokens_guard_the_api,
    roles_decide_what_each_token_may_do,
    the_actor_is_the_token_not_the_body,
    metrics_count_alerts_and_requests,
    active_gauge_is_true_after_restart,
    health_endpoints_answer,
    the_consoles_reads_count_filter_and_match,
);

async fn start(backend: Backend) -> (Database, Server) {
    let database = Database::new(backend).await;
    let server = Server::start(&database.config, Vec::new()).await;
    (database, server)
}

async fn create_returns_the_stored_alert(backend: Backend) {
    let (_db, server) = start(backend).await;
    let (status, created) = server
        .post(
            "/api/v1/alerts",
            json!({
                "source": "api", "severity": "P2", "title": "Database Connection Slow",
                "description": "Connection pool exhaustion detected", "namespace": "monitoring",
                "labels": {"app": "postgres"}, "annotations": {"runbook": "https://runbooks/db"},
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    for field in ["id", "alert_group_id", "created_at", "updated_at"] {
        assert!(created[field].is_string(), "{field} missing: {created}");
    }
    assert_eq!(created["status"], "firing");
    assert_eq!(created["severity"], "P2");
    assert_eq!(created["namespace"], "monitoring");
    assert_eq!(created["labels"], json!({"app": "postgres"}));
    assert_eq!(created["annotations"]["runbook"], "https://runbooks/db");
    assert_eq!(
        created["jaeger_trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    for field in [
        "acknowledged_at",
        "acknowledged_by",
        "resolved_at",
        "assigned_to",
        "incident_id",
    ] {
        assert!(
            created[field].is_null(),
            "{field} should be null: {created}"
        );
    }
    let id = created["id"].as_str().expect("id");
    let (status, fetched) = server.get(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, created, "a stored alert reads back identical");
    server.stop().await;
}

async fn duplicates_return_the_open_alert(backend: Backend) {
    let (_db, server) = start(backend).await;
    let body = json!({"source": "kubernetes", "severity": "P1", "title": "Pod crash looping",
                      "namespace": "monitoring", "labels": {"pod": "kafka-0"}});
    let (status, first) = server.post("/api/v1/alerts", body.clone()).await;
    assert_eq!(status, 201);
    let (status, again) = server.post("/api/v1/alerts", body.clone()).await;
    assert_eq!(status, 200, "a repeat is not a new alert");
    assert_eq!(again["id"], first["id"]);
    // Another label set is another alert, in another group.
    let mut other = body.clone();
    other["labels"]["pod"] = json!("kafka-1");
    let (status, different) = server.post("/api/v1/alerts", other).await;
    assert_eq!(status, 201);
    assert_ne!(different["alert_group_id"], first["alert_group_id"]);
    // Once resolved, the same fingerprint fires a new alert in the same group.
    let (status, _) = server
        .put_empty(&format!(
            "/api/v1/alerts/{}/resolve",
            first["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(status, 200);
    let (status, refired) = server.post("/api/v1/alerts", body).await;
    assert_eq!(status, 201);
    assert_ne!(refired["id"], first["id"]);
    assert_eq!(refired["alert_group_id"], first["alert_group_id"]);
    server.stop().await;
}

async fn concurrent_duplicates_collapse_into_one(backend: Backend) {
    let (_db, server) = start(backend).await;
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let request = server
            .client
            .post(server.url("/api/v1/alerts"))
            .json(&alert("same alert, many senders"));
        senders.spawn(async move { support::read(request.send().await.expect("POST")).await });
    }
    let answers = senders.join_all().await;
    let created = answers.iter().filter(|(status, _)| *status == 201).count();
    let ids: BTreeSet<String> = answers
        .iter()
        .map(|(_, body)| body["id"].to_string())
        .collect();
    assert_eq!(created, 1, "exactly one creation: {answers:?}");
    assert_eq!(ids.len(), 1, "every sender sees the same alert: {ids:?}");
    assert!(
        answers
            .iter()
            .all(|(status, _)| *status == 201 || *status == 200)
    );
    server.stop().await;
}

async fn listing_filters_and_counts(backend: Backend) {
    let (_db, server) = start(backend).await;
    let specs = [
        (
            "api",
            "P1",
            "monitoring",
            json!({"app": "kafka", "tier": "queue"}),
        ),
        (
            "api",
            "P2",
            "monitoring",
            json!({"app": "postgres", "tier": "db"}),
        ),
        (
            "kubernetes",
            "P1",
            "kube-system",
            json!({"app": "kafka", "tier": "db"}),
        ),
        ("kubernetes", "P3", "ingress-nginx", json!({})),
    ];
    let mut ids = Vec::new();
    for (i, (source, severity, namespace, labels)) in specs.iter().enumerate() {
        let (status, body) = server
            .post(
                "/api/v1/alerts",
                json!({"source": source, "severity": severity, "title": format!("alert {i}"),
                                            "namespace": namespace, "labels": labels}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().expect("id").to_owned());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let middle = {
        let (_, body) = server.get(&format!("/api/v1/alerts/{}", ids[2])).await;
        body["created_at"].as_str().expect("created_at").to_owned()
    };
    server
        .put_empty(&format!("/api/v1/alerts/{}/acknowledge", ids[0]))
        .await;

    let titles = |body: &Value| -> Vec<String> {
        body["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|a| a["title"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let (status, all) = server.get("/api/v1/alerts").await;
    assert_eq!(status, 200);
    assert_eq!(all["total"], 4);
    assert_eq!(
        titles(&all),
        ["alert 3", "alert 2", "alert 1", "alert 0"],
        "newest first"
    );
    for (query, expected) in [
        ("severity=P1", vec!["alert 2", "alert 0"]),
        ("status=acknowledged", vec!["alert 0"]),
        (
            "status=firing&source=kubernetes",
            vec!["alert 3", "alert 2"],
        ),
        ("namespace=monitoring", vec!["alert 1", "alert 0"]),
        ("label=app=kafka", vec!["alert 2", "alert 0"]),
        ("label=app=kafka&label=tier=db", vec!["alert 2"]),
        // One label cannot hold two values: no alert.
        ("label=app=kafka&label=app=web", vec![]),
        (
            "label=app=kafka&label=app=kafka",
            vec!["alert 2", "alert 0"],
        ),
        ("label=app=nothing", vec![]),
    ] {
        let (status, body) = server.get(&format!("/api/v1/alerts?{query}")).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(titles(&body), expected, "{query}");
        assert_eq!(body["total"], expected.len(), "{query}");
    }
    let since = form_encode(&middle);
    let (_, body) = server.get(&format!("/api/v1/alerts?since={since}")).await;
    assert_eq!(titles(&body), ["alert 3", "alert 2"], "since is inclusive");
    let (_, body) = server.get(&format!("/api/v1/alerts?until={since}")).await;
    assert_eq!(titles(&body), ["alert 1", "alert 0"], "until is exclusive");
    server.stop().await;
}

fn form_encode(value: &str) -> String {
    value.replace('+', "%2B").replace(':', "%3A")
}

async fn listing_pages_by_offset_and_cursor(backend: Backend) {
    let (_db, server) = start(backend).await;
    for i in 0..7 {
        let (status, _) = server
            .post("/api/v1/alerts", alert(&format!("page {i}")))
            .await;
        assert_eq!(status, 201);
    }
    let (_, page) = server.get("/api/v1/alerts?limit=3&offset=3").await;
    assert_eq!(page["total"], 7, "total counts every match, not the page");
    assert_eq!(page["alerts"].as_array().expect("alerts").len(), 3);
    assert_eq!(page["alerts"][0]["title"], "page 3");

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let query = match &cursor {
            Some(c) => format!("/api/v1/alerts?limit=3&cursor={c}"),
            None => "/api/v1/alerts?limit=3".to_owned(),
        };
        let (status, page) = server.get(&query).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["total"], 7);
        for alert in page["alerts"].as_array().expect("alerts") {
            seen.push(alert["title"].as_str().expect("title").to_owned());
        }
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    let expected: Vec<String> = (0..7).rev().map(|i| format!("page {i}")).collect();
    assert_eq!(
        seen, expected,
        "the cursor walks every alert once, newest first"
    );
    server.stop().await;
}

async fn lifecycle_and_audit_trail(backend: Backend) {
    let (_db, server) = start(backend).await;
    let (_, created) = server
        .post("/api/v1/alerts", alert("Disk almost full"))
        .await;
    let id = created["id"].as_str().expect("id");

    // The seed's curl sends no body and no content type.
    let (status, acked) = server
        .put_empty(&format!("/api/v1/alerts/{id}/acknowledge"))
        .await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["status"], "acknowledged");
    assert!(acked["acknowledged_at"].is_string());
    assert_ne!(acked["updated_at"], created["updated_at"]);

    let (status, assigned) = server
        .put(
            &format!("/api/v1/alerts/{id}/assign"),
            json!({"assigned_to": "alice", "note": "on call"}),
        )
        .await;
    assert_eq!(status, 200, "{assigned}");
    assert_eq!(assigned["assigned_to"], "alice");
    assert_eq!(assigned["status"], "acknowledged");

    let (status, resolved) = server
        .put(
            &format!("/api/v1/alerts/{id}/resolve"),
            json!({"by": "bob"}),
        )
        .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["status"], "resolved");
    assert!(resolved["resolved_at"].is_string());

    let (status, trail) = server.get(&format!("/api/v1/alerts/{id}/actions")).await;
    assert_eq!(status, 200);
    let actions: Vec<&str> = trail["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| a["action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(actions, ["created", "acknowledged", "assigned", "resolved"]);
    assert_eq!(trail["actions"][2]["details"]["note"], "on call");
    assert_eq!(trail["actions"][3]["actor"], "bob");

    // Acknowledge with a name.
    let (_, second) = server.post("/api/v1/alerts", alert("Second")).await;
    let second_id = second["id"].as_str().expect("id");
    let (status, acked) = server
        .put(
            &format!("/api/v1/alerts/{second_id}/acknowledge"),
            json!({"by": "carol"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(acked["acknowledged_by"], "carol");
    server.stop().await;
}

async fn illegal_changes_are_conflicts(backend: Backend) {
    let (_db, server) = start(backend).await;
    let (_, created) = server.post("/api/v1/alerts", alert("Flapping")).await;
    let id = created["id"].as_str().expect("id");
    let (status, _) = server
        .put_empty(&format!("/api/v1/alerts/{id}/resolve"))
        .await;
    assert_eq!(status, 200);
    for action in ["resolve", "acknowledge"] {
        let (status, body) = server
            .put_empty(&format!("/api/v1/alerts/{id}/{action}"))
            .await;
        assert_eq!(status, 409, "{action}: {body}");
        assert!(
            body["error"].as_str().expect("error").contains("resolved"),
            "{body}"
        );
    }
    let (status, body) = server
        .put(
            &format!("/api/v1/alerts/{id}/assign"),
            json!({"assigned_to": "x"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    // A second acknowledge of a firing alert's acknowledgement is a conflict too.
    let (_, other) = server.post("/api/v1/alerts", alert("Other")).await;
    let other_id = other["id"].as_str().expect("id");
    assert_eq!(
        server
            .put_empty(&format!("/api/v1/alerts/{other_id}/acknowledge"))
            .await
            .0,
        200
    );
    assert_eq!(
        server
            .put_empty(&format!("/api/v1/alerts/{other_id}/acknowledge"))
            .await
            .0,
        409
    );
    server.stop().await;
}

async fn delete_keeps_the_audit_trail(backend: Backend) {
    let (_db, server) = start(backend).await;
    let (_, created) = server.post("/api/v1/alerts", alert("Delete me")).await;
    let id = created["id"].as_str().expect("id");
    let (status, _) = server
        .put_empty(&format!("/api/v1/alerts/{id}/acknowledge"))
        .await;
    assert_eq!(status, 200);
    let (_, before) = server.get(&format!("/api/v1/alerts/{id}/actions")).await;
    let response = server
        .client
        .delete(server.url(&format!("/api/v1/alerts/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(server.get(&format!("/api/v1/alerts/{id}")).await.0, 404);
    let response = server
        .client
        .delete(server.url(&format!("/api/v1/alerts/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status().as_u16(), 404);
    let (status, trail) = server.get(&format!("/api/v1/alerts/{id}/actions")).await;
    assert_eq!(status, 200);
    // The entries from before the deletion, unchanged and in order (the `created` entry left the alert's row
    // for the audit table), then the deletion with a copy of the alert.
    let kept = trail["actions"].as_array().expect("actions");
    assert_eq!(kept.len(), 3, "{trail}");
    assert_eq!(
        kept[..2],
        before["actions"].as_array().expect("actions")[..],
        "{trail}"
    );
    assert_eq!(kept[0]["action"], "created");
    assert_eq!(kept[0]["details"]["severity"], created["severity"]);
    assert_eq!(kept[1]["action"], "acknowledged");
    assert_eq!(kept[2]["action"], "deleted");
    assert_eq!(kept[2]["details"]["title"], "Delete me");
    server.stop().await;
}

async fn a_nul_byte_is_an_invalid_field_not_a_server_error(backend: Backend) {
    let (_db, server) = start(backend).await;
    for (field, body) in [
        (
            "title",
            json!({"source": "api", "severity": "P1", "title": "a\u{0000}b"}),
        ),
        (
            "source",
            json!({"source": "a\u{0000}", "severity": "P1", "title": "t"}),
        ),
        (
            "namespace",
            json!({"source": "api", "severity": "P1", "title": "t", "namespace": "\u{0000}"}),
        ),
        (
            "description",
            json!({"source": "api", "severity": "P1", "title": "t", "description": "x\u{0000}"}),
        ),
        (
            "labels.app",
            json!({"source": "api", "severity": "P1", "title": "t", "labels": {"app": "\u{0000}"}}),
        ),
        (
            "annotations.\\u0000",
            json!({"source": "api", "severity": "P1", "title": "t",
            "annotations": {"\u{0000}": "x"}}),
        ),
        (
            "trace_id",
            json!({"source": "api", "severity": "P1", "title": "t", "trace_id": "\u{0000}"}),
        ),
    ] {
        let (status, answer) = server.post("/api/v1/alerts", body).await;
        assert_eq!(status, 422, "{field}: {answer}");
        assert_eq!(answer["details"]["field"], field, "{answer}");
    }
    let (_, created) = server.post("/api/v1/alerts", alert("nul target")).await;
    let id = created["id"].as_str().expect("id");
    let (status, answer) = server
        .put(
            &format!("/api/v1/alerts/{id}/acknowledge"),
            json!({"by": "a\u{0000}"}),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["details"]["field"], "by", "{answer}");
    let (status, answer) = server
        .put(
            &format!("/api/v1/alerts/{id}/assign"),
            json!({"assigned_to": "ann", "note": "\u{0000}"}),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    for query in [
        "/api/v1/alerts?namespace=a%00b",
        "/api/v1/alerts?label=app%3D%00",
        "/api/v2/alerts?filter=a%3D%22%00%22",
        "/api/v2/silences?filter=a%3D%00",
    ] {
        let (status, answer) = server.get(query).await;
        assert_eq!(status, 400, "{query}: {answer}");
    }
    let now = chrono::Utc::now();
    let (status, answer) = server
        .post(
            "/api/v2/silences",
            json!({"matchers": [{"name": "a", "value": "\u{0000}", "isRegex": false}],
                "startsAt": now, "endsAt": now + chrono::Duration::hours(1),
                "createdBy": "ann", "comment": "c"}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    // Nothing of the above reached the store.
    let (_, page) = server.get("/api/v1/alerts").await;
    assert_eq!(page["total"], 1, "{page}");
    server.stop().await;
}

async fn made_up_methods_and_sources_do_not_grow_the_metrics(backend: Backend) {
    let (_db, server) = start(backend).await;
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("BREW{i}").as_bytes()).expect("method");
        server
            .client
            .request(method, server.url(&format!("/made/up/{i}")))
            .send()
            .await
            .expect("request");
        server
            .post(
                "/api/v1/alerts",
                json!({"source": format!("src-{i}"), "severity": "P3", "title": "t"}),
            )
            .await;
    }
    let metrics = server.metrics().await;
    let methods: BTreeSet<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("alerting_http_request_duration_seconds_count"))
        .filter_map(|line| line.split("method=\"").nth(1)?.split('"').next())
        .collect();
    assert!(
        !methods.iter().any(|m| m.starts_with("BREW")),
        "{methods:?}"
    );
    assert!(methods.contains("other"), "{methods:?}");
    let routes: BTreeSet<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("alerting_http_request_duration_seconds_count"))
        .filter_map(|line| line.split("route=\"").nth(1)?.split('"').next())
        .collect();
    assert!(!routes.iter().any(|r| r.starts_with("/made")), "{routes:?}");
    let sources: BTreeSet<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("alerting_alerts_created_total"))
        .filter_map(|line| line.split("source=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(sources, BTreeSet::from(["other"]), "{metrics}");
    server.stop().await;
}

async fn bad_input_is_refused_clearly(backend: Backend) {
    let (_db, server) = start(backend).await;
    let post_raw = |body: Vec<u8>, content_type: Option<&'static str>| {
        let mut request = server.client.post(server.url("/api/v1/alerts")).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        async move { support::read(request.send().await.expect("POST")).await }
    };
    let json_type = Some("application/json");

    let (status, body) = post_raw(b"{\"source\": \"api\", ".to_vec(), json_type).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("malformed JSON"),
        "{body}"
    );

    let (status, body) = post_raw(br#"{"severity":"P1","title":"t"}"#.to_vec(), json_type).await;
    assert_eq!(status, 422);
    assert_eq!(body["details"]["field"], "source", "{body}");

    let (status, body) = post_raw(
        br#"{"source":"a","severity":"P5","title":"t"}"#.to_vec(),
        json_type,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["details"]["field"], "severity", "{body}");

    for (field, length) in [("title", 256), ("source", 51), ("namespace", 101)] {
        let mut body = alert("t");
        body[field] = json!("x".repeat(length));
        let (status, answer) = server.post("/api/v1/alerts", body).await;
        assert_eq!(status, 422, "{field}: {answer}");
        assert_eq!(answer["details"]["field"], field, "{answer}");
    }
    let mut at_limit = alert(&"x".repeat(255));
    at_limit["namespace"] = json!("n".repeat(100));
    assert_eq!(
        server.post("/api/v1/alerts", at_limit).await.0,
        201,
        "limits are inclusive"
    );

    let huge = format!(
        r#"{{"source":"a","severity":"P1","title":"t","description":"{}"}}"#,
        "x".repeat(1024 * 1024 + 1)
    );
    let (status, body) = post_raw(huge.into_bytes(), json_type).await;
    assert_eq!(status, 413, "{body}");

    let (status, body) = post_raw(
        br#"{"source":"a","severity":"P1","title":"t"}"#.to_vec(),
        Some("text/plain"),
    )
    .await;
    assert_eq!(status, 415, "{body}");

    let (status, body) = post_raw(Vec::new(), json_type).await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = server.get("/api/v1/alerts/not-a-uuid").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server
        .get(&format!("/api/v1/alerts/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server.get("/api/v1/alerts?limit=5000").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.get("/api/v1/nothing-here").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string());
    let (status, body) = server
        .put(
            &format!("/api/v1/alerts/{}/assign", uuid::Uuid::new_v4()),
            json!({}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"]["field"], "assigned_to");
    server.stop().await;
}

async fn tokens_guard_the_api(backend: Backend) {
    let database = Database::new(backend).await;
    let tokens = vec![
        ApiToken {
            name: "grafana".into(),
            token: "read-secret".into(),
            access: Access::Read,
        },
        ApiToken {
            name: "oncall-bot".into(),
            token: "write-secret".into(),
            access: Access::Admin,
        },
    ];
    let server = Server::start(&database.config, tokens).await;
    let send = |method: reqwest::Method, path: &str, token: Option<&str>| {
        let mut request = server.client.request(method.clone(), server.url(path));
        if method == reqwest::Method::POST {
            request = request.json(&alert("guarded"));
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.expect("request") }
    };
    let response = send(reqwest::Method::GET, "/api/v1/alerts", None).await;
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        send(reqwest::Method::GET, "/api/v1/alerts", Some("wrong"))
            .await
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        send(reqwest::Method::GET, "/api/v1/alerts", Some("read-secret"))
            .await
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        send(reqwest::Method::POST, "/api/v1/alerts", Some("read-secret"))
            .await
            .status()
            .as_u16(),
        403
    );
    let (status, created) = support::read(
        send(
            reqwest::Method::POST,
            "/api/v1/alerts",
            Some("write-secret"),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().expect("id");
    let response = send(
        reqwest::Method::PUT,
        &format!("/api/v1/alerts/{id}/acknowledge"),
        Some("write-secret"),
    )
    .await;
    let (_, acked) = support::read(response).await;
    assert_eq!(
        acked["acknowledged_by"], "oncall-bot",
        "the token's name is the actor"
    );
    for open in [
        "/health/live",
        "/health/ready",
        "/health/database",
        "/metrics",
        "/api/v1/openapi.json",
    ] {
        assert_eq!(
            send(reqwest::Method::GET, open, None)
                .await
                .status()
                .as_u16(),
            200,
            "{open}"
        );
    }
    server.stop().await;
}

fn token(name: &str, access: Access) -> ApiToken {
    ApiToken {
        name: name.into(),
        token: format!("{name}-secret").into(),
        access,
    }
}

/// Sends `method path` with `token`'s secret and a body fitting the route; returns the status.
async fn call(server: &Server, method: &str, path: &str, token: &str) -> u16 {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = server
        .client
        .request(method.clone(), server.url(path))
        .bearer_auth(format!("{token}-secret"));
    let now = chrono::Utc::now();
    let body = match path {
        "/api/v1/alerts" => Some(alert(&format!("by {token} {}", uuid::Uuid::new_v4()))),
        "/api/v2/alerts" => {
            Some(json!([{"labels": {"alertname": format!("R{}", uuid::Uuid::new_v4())}}]))
        }
        "/api/v1/webhooks/grafana" => Some(json!({"alerts": [{"status": "firing",
            "labels": {"alertname": format!("G{}", uuid::Uuid::new_v4())}}]})),
        "/api/v2/silences" => Some(
            json!({"matchers": [{"name": "a", "value": "b", "isRegex": false}],
            "startsAt": now, "endsAt": now + chrono::Duration::hours(1),
            "createdBy": "x", "comment": "test"}),
        ),
        p if p.ends_with("/assign") => Some(json!({"assigned_to": "ann"})),
        _ => None,
    };
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request").status().as_u16()
}

async fn as_admin(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = server
        .client
        .request(method, server.url(path))
        .bearer_auth("admin-secret");
    if let Some(body) = body {
        request = request.json(&body);
    }
    support::read(request.send().await.expect("request")).await
}

async fn roles_decide_what_each_token_may_do(backend: Backend) {
    let database = Database::new(backend).await;
    let tokens = vec![
        token("reader", Access::Read),
        token("ingest", Access::Ingest),
        token("operator", Access::Operate),
        token("admin", Access::Admin),
    ];
    let server = Server::start(&database.config, tokens).await;
    let roles = ["reader", "ingest", "operator", "admin"];
    // Each route, and the first role (index into `roles`) allowed to call it.
    let reads = [
        "/api/v1/alerts",
        "/api/v1/notifications",
        "/api/v2/alerts",
        "/api/v2/alerts/groups",
        "/api/v2/receivers",
        "/api/v2/status",
        "/api/v2/silences",
    ];
    for path in reads {
        for role in roles {
            assert_eq!(
                call(&server, "GET", path, role).await,
                200,
                "GET {path} as {role}"
            );
        }
    }
    for path in [
        "/api/v1/alerts",
        "/api/v2/alerts",
        "/api/v1/webhooks/grafana",
    ] {
        assert_eq!(
            call(&server, "POST", path, "reader").await,
            403,
            "POST {path} as reader"
        );
        for role in ["ingest", "operator", "admin"] {
            let status = call(&server, "POST", path, role).await;
            assert!(
                status == 200 || status == 201,
                "POST {path} as {role}: {status}"
            );
        }
    }
    for (method, action, allowed_from) in [
        ("PUT", "assign", 2),
        ("PUT", "acknowledge", 2),
        ("PUT", "resolve", 2),
        ("DELETE", "", 3),
    ] {
        for (index, role) in roles.iter().enumerate() {
            let (_, created) = as_admin(
                &server,
                reqwest::Method::POST,
                "/api/v1/alerts",
                Some(alert(&format!("{action} {role}"))),
            )
            .await;
            let id = created["id"].as_str().expect("id");
            let path = if action.is_empty() {
                format!("/api/v1/alerts/{id}")
            } else {
                format!("/api/v1/alerts/{id}/{action}")
            };
            let status = call(&server, method, &path, role).await;
            if index >= allowed_from {
                assert!(
                    status == 200 || status == 204,
                    "{method} {path} as {role}: {status}"
                );
            } else {
                assert_eq!(status, 403, "{method} {path} as {role}");
            }
        }
    }
    for (index, role) in roles.iter().enumerate() {
        let status = call(&server, "POST", "/api/v2/silences", role).await;
        assert_eq!(
            status == 200,
            index >= 2,
            "POST /api/v2/silences as {role}: {status}"
        );
        if status == 200 {
            let (_, silences) =
                as_admin(&server, reqwest::Method::GET, "/api/v2/silences", None).await;
            let id = silences[0]["id"].as_str().expect("silence id").to_owned();
            if *role == "operator" {
                assert_eq!(
                    silences[0]["createdBy"], "operator",
                    "the token's name: {silences}"
                );
            }
            let expire = call(
                &server,
                "DELETE",
                &format!("/api/v2/silence/{id}"),
                "ingest",
            )
            .await;
            assert_eq!(expire, 403, "DELETE silence as ingest");
            let expire = call(&server, "DELETE", &format!("/api/v2/silence/{id}"), role).await;
            assert_eq!(expire, 200, "DELETE silence as {role}");
            if *role == "operator" {
                let (_, trail) = as_admin(
                    &server,
                    reqwest::Method::GET,
                    &format!("/api/v1/silences/{id}/actions"),
                    None,
                )
                .await;
                let actions: Vec<(&str, &str)> = trail["actions"]
                    .as_array()
                    .expect("actions")
                    .iter()
                    .map(|a| {
                        (
                            a["action"].as_str().unwrap_or(""),
                            a["actor"].as_str().unwrap_or(""),
                        )
                    })
                    .collect();
                assert_eq!(
                    actions,
                    [("created", "operator"), ("expired", "operator")],
                    "{trail}"
                );
                assert_eq!(
                    trail["actions"][1]["details"]["matchers"][0]["name"], "a",
                    "{trail}"
                );
            }
        }
    }
    server.stop().await;
}

async fn the_actor_is_the_token_not_the_body(backend: Backend) {
    let database = Database::new(backend).await;
    let server = Server::start(&database.config, vec![token("ingest", Access::Operate)]).await;
    let response = server
        .client
        .post(server.url("/api/v1/alerts"))
        .bearer_auth("ingest-secret")
        .json(&alert("forged"))
        .send()
        .await
        .expect("POST");
    let (_, created) = support::read(response).await;
    let id = created["id"].as_str().expect("id");
    let response = server
        .client
        .put(server.url(&format!("/api/v1/alerts/{id}/acknowledge")))
        .bearer_auth("ingest-secret")
        .json(&json!({"by": "someone-else"}))
        .send()
        .await
        .expect("PUT");
    let (status, acked) = support::read(response).await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["acknowledged_by"], "ingest");
    let response = server
        .client
        .get(server.url(&format!("/api/v1/alerts/{id}/actions")))
        .bearer_auth("ingest-secret")
        .send()
        .await
        .expect("GET");
    let (_, trail) = support::read(response).await;
    let acknowledged = trail["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find(|entry| entry["action"] == "acknowledged")
        .expect("acknowledged entry")
        .clone();
    assert_eq!(acknowledged["actor"], "ingest", "{trail}");
    assert_eq!(
        acknowledged["details"]["on_behalf_of"], "someone-else",
        "{trail}"
    );
    server.stop().await;
}

async fn metrics_count_alerts_and_requests(backend: Backend) {
    let (_db, server) = start(backend).await;
    for i in 0..3 {
        server
            .post(
                "/api/v1/alerts",
                json!({"source": "api", "severity": "P1", "title": format!("m{i}")}),
            )
            .await;
    }
    server
        .post(
            "/api/v1/alerts",
            json!({"source": "api", "severity": "P1", "title": "m0"}),
        )
        .await; // duplicate
    let (_, one) = server
        .post(
            "/api/v1/alerts",
            json!({"source": "kubernetes", "severity": "P3", "title": "k"}),
        )
        .await;
    server
        .put_empty(&format!(
            "/api/v1/alerts/{}/resolve",
            one["id"].as_str().expect("id")
        ))
        .await;
    server
        .get(&format!("/api/v1/alerts/{}", uuid::Uuid::new_v4()))
        .await;

    let text = server.metrics().await;
    assert!(
        text.contains(r#"alerting_alerts_created_total{severity="P1",source="api"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"alerting_alerts_created_total{severity="P3",source="kubernetes"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"alerting_active_alerts{severity="P1"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"alerting_active_alerts{severity="P3"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"alerting_http_request_duration_seconds_count{method="GET",route="/api/v1/alerts/{id}",status="404"} 1"#),
        "route templates, not raw paths: {text}"
    );
    assert!(
        !text.contains("route=\"/api/v1/alerts/0"),
        "no raw ids in labels"
    );
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    promtool_accepts(&text);
    server.stop().await;
}

/// `promtool check metrics` finds nothing to say about `text`.
fn promtool_accepts(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is required (apt-get install prometheus; scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics");
    let output = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}"
    );
}

async fn active_gauge_is_true_after_restart(backend: Backend) {
    let database = Database::new(backend).await;
    let server = Server::start(&database.config, Vec::new()).await;
    for (i, severity) in ["P1", "P1", "P2"].iter().enumerate() {
        server
            .post(
                "/api/v1/alerts",
                json!({"source": "api", "severity": severity, "title": format!("r{i}")}),
            )
            .await;
    }
    server.stop().await;
    let restarted = Server::start(&database.config, Vec::new()).await;
    let text = restarted.metrics().await;
    assert!(
        text.contains(r#"alerting_active_alerts{severity="P1"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"alerting_active_alerts{severity="P2"} 1"#),
        "{text}"
    );
    let (_, list) = restarted.get("/api/v1/alerts").await;
    assert_eq!(list["total"], 3, "alerts survive a restart");
    restarted.stop().await;
}

async fn health_endpoints_answer(backend: Backend) {
    let (_db, server) = start(backend).await;
    for path in ["/health/live", "/health/ready", "/health/database"] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body["status"], "ok", "{path}");
    }
    server.stop().await;
}

/// A pool on `database` (PostgreSQL), its schema migrated up to, not including, migration `version`: the schema
/// of an older GoMon, for upgrade tests.
async fn migrated_before(database: &Database, version: i64) -> sqlx::PgPool {
    let url = database.postgres_url();
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let mut before = sqlx::migrate!("migrations/postgres");
    before.migrations = before
        .migrations
        .iter()
        .filter(|migration| migration.version < version)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before
        .run(&pool)
        .await
        .unwrap_or_else(|error| panic!("migrations before {version}: {error}"));
    pool
}

/// An alert stored before its `created` entry moved into its own row (migration 0006) keeps its whole audit
/// trail after the upgrade, with the actor of that entry.
#[tokio::test]
async fn upgrade_keeps_the_created_entries() {
    let database = Database::new(Backend::Postgres).await;
    let pool = migrated_before(&database, 6).await;
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO alerts_active (id, alert_group_id, fingerprint, source, severity, title) \
         VALUES ($1, gen_random_uuid(), 'f', 'api', 'P2', 'Stored before the upgrade')",
    )
    .bind(id)
    .execute(&pool)
    .await
    .expect("insert an alert");
    sqlx::query(
        "INSERT INTO alert_actions (alert_id, action, actor, details, created_at) VALUES \
         ($1, 'created', 'alice', '{\"severity\": \"P2\", \"source\": \"api\"}', now()), \
         ($1, 'acknowledged', 'bob', '{}', now() + interval '1 second')",
    )
    .bind(id)
    .execute(&pool)
    .await
    .expect("insert its audit rows");
    pool.close().await;

    let server = Server::start(&database.config, Vec::new()).await;
    let (status, trail) = server.get(&format!("/api/v1/alerts/{id}/actions")).await;
    assert_eq!(status, 200, "{trail}");
    let actions = trail["actions"].as_array().expect("actions");
    assert_eq!(actions.len(), 2, "{trail}");
    assert_eq!(actions[0]["action"], "created");
    assert_eq!(actions[0]["actor"], "alice");
    assert_eq!(
        actions[0]["details"],
        json!({"severity": "P2", "source": "api"})
    );
    assert_eq!(actions[1]["action"], "acknowledged");
    assert_eq!(actions[1]["actor"], "bob");
    server.stop().await;
}

/// An alert open before open alerts were keyed by their group (migration 0007) is the one its repeat finds
/// after the upgrade: no second alert.
#[tokio::test]
async fn upgrade_keeps_open_alerts_deduplicated() {
    let database = Database::new(Backend::Postgres).await;
    let pool = migrated_before(&database, 7).await;
    let new: gomon_alerting::model::NewAlert =
        serde_json::from_value(alert("Open before the upgrade")).expect("a new alert");
    let open = new.into_alert(chrono::Utc::now());
    sqlx::query(
        "INSERT INTO alerts_active (id, alert_group_id, fingerprint, source, severity, title) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(open.id)
    .bind(open.alert_group_id)
    .bind(&open.fingerprint)
    .bind(&open.source)
    .bind(open.severity.as_str())
    .bind(&open.title)
    .execute(&pool)
    .await
    .expect("insert an open alert");
    pool.close().await;

    let server = Server::start(&database.config, Vec::new()).await;
    let (status, body) = server
        .post("/api/v1/alerts", alert("Open before the upgrade"))
        .await;
    assert_eq!(status, 200, "a repeat of the open alert: {body}");
    assert_eq!(body["id"], open.id.to_string());
    let (_, list) = server.get("/api/v1/alerts").await;
    assert_eq!(list["total"], 1, "{list}");
    server.stop().await;
}

/// Title searches read every alert they could match: while two run (held here by a table lock), a third is
/// answered 429 with `Retry-After` at once instead of taking another connection; the two then answer 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_title_search_at_once_is_shed_with_429() {
    use sqlx::Connection;
    let database = Database::new(Backend::Postgres).await;
    let server = Server::start(&database.config, Vec::new()).await;
    assert_eq!(
        server.post("/api/v1/alerts", alert("Disk full")).await.0,
        201
    );
    let url = database.postgres_url();
    let mut holder = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut holder)
        .await
        .expect("begin");
    sqlx::query("LOCK TABLE alerts_active IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .expect("lock");
    let search = |text: &str| {
        let (client, url) = (
            server.client.clone(),
            server.url(&format!("/api/v1/alerts?q={text}")),
        );
        tokio::spawn(async move { support::read(client.get(url).send().await.expect("GET")).await })
    };
    let running = [search("disk"), search("full")];
    let mut admin = sqlx::PgConnection::connect(&url).await.expect("connect");
    for _ in 0..100 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%LIKE%'",
        )
        .fetch_one(&mut admin)
        .await
        .expect("pg_stat_activity");
        if waiting == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = server
        .client
        .get(server.url("/api/v1/alerts?q=disk"))
        .send()
        .await
        .expect("GET");
    let retry_after = response.headers().get("retry-after").cloned();
    let (status, body) = support::read(response).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        retry_after.as_ref().and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("retry")),
        "{body}"
    );
    sqlx::query("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("rollback");
    for search in running {
        let (status, body) = search.await.expect("search");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["total"], 1, "{body}");
    }
    assert_eq!(server.get("/api/v1/alerts?q=disk").await.0, 200);
    server.stop().await;
}

/// PostgreSQL going away: the API answers 503 with a clear error, and recovers by itself when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_503_then_recovers() {
    let database = Database::new(Backend::Postgres).await;
    let (proxy, config) = database.behind_proxy().await;
    let server = Server::start(&config, Vec::new()).await;
    assert_eq!(server.post("/api/v1/alerts", alert("before")).await.0, 201);

    proxy.cut();
    let (status, body) = server.post("/api/v1/alerts", alert("during")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("database unavailable"),
        "{body}"
    );
    let (status, body) = server.get("/health/database").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");

    proxy.restore();
    let mut recovered = false;
    for _ in 0..50 {
        if server.post("/api/v1/alerts", alert("after")).await.0 == 201 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "the API recovers once the database is back");
    assert_eq!(server.get("/health/database").await.0, 200);
    let (_, list) = server.get("/api/v1/alerts").await;
    assert_eq!(list["total"], 2, "nothing half-written during the outage");
    server.stop().await;
}

/// A request that outlasts `request_timeout` is answered 408 in the JSON error format, and measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_time_out_with_a_json_408() {
    use sqlx::Connection;
    let database = Database::new(Backend::Sqlite).await;
    let server =
        Server::start_with_timeout(&database.config, Vec::new(), Duration::from_millis(300)).await;
    // Another process holds SQLite's write lock: the service's write waits for it.
    let file = database.config.data_dir.join("alerting.db");
    let mut holder = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .expect("second connection");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .expect("lock");
    let (status, body) = server.post("/api/v1/alerts", alert("stuck")).await;
    assert_eq!(status, 408, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("longer than"),
        "{body}"
    );
    sqlx::query("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("unlock");
    let text = server.metrics().await;
    assert!(
        text.contains(r#"alerting_http_request_duration_seconds_count{method="POST",route="/api/v1/alerts",status="408"} 1"#),
        "{text}"
    );
    server.stop().await;
}

/// The OpenAPI document served is the one kept in docs/ (set BLESS=1 to rewrite docs/openapi.json).
#[test]
fn openapi_document_is_current() {
    let generated = gomon_alerting::api::openapi_json();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write docs/openapi.json");
    }
    let kept = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        kept, generated,
        "docs/openapi.json is stale: run BLESS=1 cargo test -p gomon-alerting openapi"
    );
    let document: Value = serde_json::from_str(&generated).expect("valid JSON");
    for path in [
        "/api/v1/alerts",
        "/api/v1/alerts/{id}",
        "/api/v1/alerts/{id}/acknowledge",
        "/api/v1/alerts/{id}/actions",
    ] {
        assert!(document["paths"][path].is_object(), "{path} documented");
    }
}

/// Runs `sql` on the test PostgreSQL server's `postgres` database.
async fn postgres_admin(sql: &str) {
    let admin = sqlx::PgPool::connect(&format!("{}/postgres", support::postgres_server()))
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::query(sql).execute(&admin).await.expect(sql);
    admin.close().await;
}

/// A PostgreSQL that turned read-only (a replica, or a primary after a failover) is a dependency unavailable: 503
/// with Retry-After, and the same request succeeds once it accepts writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_postgres_answers_503_with_retry_after() {
    let database = Database::new(Backend::Postgres).await;
    let url = database.postgres_url();
    let name = url.rsplit('/').next().expect("database name").to_owned();
    let server = Server::start(&database.config, Vec::new()).await;
    assert_eq!(server.post("/api/v1/alerts", alert("before")).await.0, 201);
    let reconnect = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    );
    postgres_admin(&format!(
        "ALTER DATABASE {name} SET default_transaction_read_only = on"
    ))
    .await;
    postgres_admin(&reconnect).await;
    let mut answered = None;
    for _ in 0..50 {
        let response = server
            .client
            .post(server.url("/api/v1/alerts"))
            .json(&alert("while read-only"))
            .send()
            .await
            .expect("POST");
        let retry_after = response.headers().get("retry-after").cloned();
        let (status, body) = support::read(response).await;
        if body["error"]
            .as_str()
            .is_some_and(|e| e.contains("read-only"))
        {
            answered = Some((status, retry_after, body));
            break;
        }
        assert_eq!(status, 503, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, retry_after, body) = answered.expect("a read-only refusal");
    assert_eq!(status, 503, "{body}");
    assert!(retry_after.is_some(), "Retry-After on 503");
    postgres_admin(&format!(
        "ALTER DATABASE {name} RESET default_transaction_read_only"
    ))
    .await;
    postgres_admin(&reconnect).await;
    support::eventually_status(&server, "/api/v1/alerts", alert("after"), 201).await;
    server.stop().await;
}

/// A full disk under SQLite is a dependency unavailable: 503 with Retry-After, nothing half-written, and writes
/// succeed again once there is room. The database lives on a 2 MiB tmpfs of its own (the tests run as root).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_sqlite_answers_503_with_retry_after() {
    let mount = tempfile::tempdir().expect("mount point");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(mount.path())
        .status()
        .expect("mount (the test suite runs as root)");
    assert!(mounted.success(), "mount a tmpfs for the SQLite database");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.path().to_path_buf());
    let config = gomon_alerting::store::DatabaseConfig {
        data_dir: mount.path().join("data"),
        ..Database::new(Backend::Sqlite).await.config
    };
    let server = Server::start(&config, Vec::new()).await;
    assert_eq!(server.post("/api/v1/alerts", alert("before")).await.0, 201);
    // Fill the filesystem.
    let filler = mount.path().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 4 * 1024 * 1024]);
    let mut big = alert("on a full disk");
    big["description"] = json!("x".repeat(600 * 1024));
    let response = server
        .client
        .post(server.url("/api/v1/alerts"))
        .json(&big)
        .send()
        .await
        .expect("POST");
    let retry_after = response.headers().get("retry-after").cloned();
    let (status, body) = support::read(response).await;
    assert_eq!(status, 503, "{body}");
    assert!(retry_after.is_some(), "Retry-After on 503");
    std::fs::remove_file(&filler).expect("free the disk");
    support::eventually_status(&server, "/api/v1/alerts", big, 201).await;
    let (_, page) = server.get("/api/v1/alerts").await;
    assert_eq!(page["total"], 2, "{page}");
    server.stop().await;
}

/// A small deterministic generator (xorshift), so that a failure names a seed that reproduces it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn coin(&mut self) -> bool {
        self.next().is_multiple_of(2)
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize].clone()
    }
}

/// Values an attacker or a broken client sends in place of a field.
fn hostile_values() -> Vec<Value> {
    let nested = (0..200).fold(json!(1), |inner, _| json!([inner]));
    vec![
        json!("a\u{0000}b"),
        json!("\u{0000}"),
        json!("x".repeat(70_000)),
        json!("😀".repeat(300)),
        json!("'; DROP TABLE alerts_active; --"),
        json!("(a+)+$"),
        json!("\\w{1000}"),
        json!("2026-13-45T99:99:99Z"),
        json!("0001-01-01T00:00:00Z"),
        json!("9999-12-31T23:59:59Z"),
        json!("+262143-12-31T23:59:59Z"),
        json!(""),
        json!(" "),
        json!(1e308),
        json!(-1),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(null),
        json!(true),
        json!([]),
        json!({}),
        json!({"\u{0000}": "x"}),
        json!({"a": "\u{0000}"}),
        json!({"": ""}),
        nested,
    ]
}

/// Query values that are odd, huge, or out of every type's range.
const HOSTILE_QUERIES: &[&str] = &[
    "status=firing",
    "status=%00",
    "severity=P1",
    "severity=P%00",
    "namespace=%00",
    "source=a%00",
    "label=a%3D%00",
    "label=%3D",
    "label=a%3Db",
    "since=0001-01-01T00:00:00Z",
    "since=%2B262143-12-31T23:59:59Z",
    "until=1970-01-01T00:00:00Z",
    "limit=0",
    "limit=1000",
    "limit=18446744073709551616",
    "offset=9223372036854775807",
    "offset=9223372036854775808",
    "offset=18446744073709551615",
    "cursor=%00",
    "cursor=00000000-0000-0000-0000-000000000000",
    "filter=a%3D~%22(a%2B)%2B%24%22",
    "filter=a%3D~%22%5Cw%7B1000%7D%22",
    "filter=%7B%7D",
    "filter=a%3D%22%00%22",
    "active=maybe",
    "silenced=false",
    "alert_id=%00",
    "unknown=1",
    "%00=%00",
];

async fn hostile_requests_never_get_a_5xx(backend: Backend) {
    let (_db, server) = start(backend).await;
    let (_, created) = server.post("/api/v1/alerts", alert("fuzz target")).await;
    let alert_id = created["id"].as_str().expect("id").to_owned();
    let now = chrono::Utc::now();
    let (_, silence) = server
        .post(
            "/api/v2/silences",
            json!({"matchers": [{"name": "a", "value": "b", "isRegex": false}], "startsAt": now,
                "endsAt": now + chrono::Duration::hours(1), "createdBy": "x", "comment": "c"}),
        )
        .await;
    let silence_id = silence["silenceID"]
        .as_str()
        .expect("silence id")
        .to_owned();
    // Each route with a valid body to mutate.
    let routes: Vec<(&str, String, Value)> = vec![
        (
            "POST",
            "/api/v1/alerts".into(),
            json!({"source": "api", "severity": "P2", "title": "t",
            "description": "d", "namespace": "n", "labels": {"a": "b"}, "annotations": {"c": "d"}, "trace_id": "t"}),
        ),
        ("GET", "/api/v1/alerts".into(), Value::Null),
        ("GET", "/api/v1/alerts/{id}".into(), Value::Null),
        (
            "PUT",
            "/api/v1/alerts/{id}/acknowledge".into(),
            json!({"by": "ann"}),
        ),
        (
            "PUT",
            "/api/v1/alerts/{id}/assign".into(),
            json!({"assigned_to": "ann", "note": "n"}),
        ),
        (
            "PUT",
            "/api/v1/alerts/{id}/resolve".into(),
            json!({"by": "ann"}),
        ),
        ("GET", "/api/v1/alerts/{id}/actions".into(), Value::Null),
        ("DELETE", "/api/v1/alerts/{id}".into(), Value::Null),
        ("GET", "/api/v1/notifications".into(), Value::Null),
        (
            "POST",
            "/api/v2/alerts".into(),
            json!([{"labels": {"alertname": "A", "severity": "critical"},
            "annotations": {"summary": "s"}, "startsAt": now, "endsAt": now + chrono::Duration::hours(1),
            "generatorURL": "http://x/graph?g0.expr=up"}]),
        ),
        ("GET", "/api/v2/alerts".into(), Value::Null),
        ("GET", "/api/v2/alerts/groups".into(), Value::Null),
        ("GET", "/api/v2/silences".into(), Value::Null),
        (
            "POST",
            "/api/v2/silences".into(),
            json!({"matchers": [{"name": "a", "value": "b", "isRegex": true,
            "isEqual": true}], "startsAt": now, "endsAt": now + chrono::Duration::hours(1),
            "createdBy": "x", "comment": "c"}),
        ),
        ("GET", "/api/v2/silence/{sid}".into(), Value::Null),
        ("DELETE", "/api/v2/silence/{sid}".into(), Value::Null),
        (
            "POST",
            "/api/v1/webhooks/grafana".into(),
            json!({"alerts": [{"status": "firing",
            "labels": {"alertname": "G"}, "annotations": {}, "startsAt": now, "fingerprint": "f",
            "valueString": "v"}]}),
        ),
    ];
    let ids = [
        alert_id.clone(),
        uuid::Uuid::new_v4().to_string(),
        "%00".to_owned(),
        "x".repeat(5000),
        "..%2F..%2Fetc%2Fpasswd".to_owned(),
    ];
    let values = hostile_values();
    let seed = 0x9E37_79B9_7F4A_7C15;
    let mut rng = Rng(seed);
    for round in 0..400 {
        let (method, template, valid) = rng.pick(&routes);
        let id = rng.pick(&ids);
        let sid = if rng.coin() {
            silence_id.clone()
        } else {
            rng.pick(&ids)
        };
        let path = template.replace("{id}", &id).replace("{sid}", &sid);
        let mut url = server.url(&path);
        if rng.coin() {
            url.push('?');
            url.push_str(rng.pick(HOSTILE_QUERIES));
            if rng.coin() {
                url.push('&');
                url.push_str(rng.pick(HOSTILE_QUERIES));
            }
        }
        let mut body = valid.clone();
        // Replace one field (at the top, or inside the first element or object) with a hostile value.
        let target = match &mut body {
            Value::Array(items) if !items.is_empty() => &mut items[0],
            other => other,
        };
        if let Value::Object(fields) = target {
            let keys: Vec<String> = fields.keys().cloned().collect();
            if !keys.is_empty() {
                let key = rng.pick(&keys);
                let replacement = rng.pick(&values);
                match fields.get_mut(&key) {
                    Some(Value::Object(inner)) if rng.coin() => {
                        inner.insert(format!("k{}", rng.next() % 3), replacement);
                    }
                    Some(Value::Array(inner)) if !inner.is_empty() && rng.coin() => {
                        inner[0] = replacement;
                    }
                    _ => {
                        fields.insert(key, replacement);
                    }
                }
            }
        }
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = server.client.request(method.clone(), &url);
        match rng.next() % 8 {
            0 => {
                request = request
                    .header("content-type", "application/json")
                    .body(vec![0xff, 0xfe, b'{'])
            }
            1 => request = request.header("content-type", "text/plain").body("{}"),
            _ if !valid.is_null() || rng.next().is_multiple_of(4) => request = request.json(&body),
            _ => {}
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert!(
            status < 500,
            "round {round} (seed {seed:#x}): {method} {url} with {body:.300} answered {status}: {text:.500}"
        );
    }
    // The service is still healthy.
    assert_eq!(server.get("/health/ready").await.0, 200);
    server.stop().await;
}

/// What the console reads: open counts by status and severity, the title filter (ASCII case ignored, `%` and `_`
/// matched as themselves, bounded), the silences of one alert, the delivery status, and the caller.
async fn the_consoles_reads_count_filter_and_match(backend: Backend) {
    let (_db, server) = start(backend).await;
    let mut ids = Vec::new();
    for (title, severity) in [
        ("Disk 100% full on db-1", "P1"),
        ("disk_usage high on db-2", "P1"),
        ("Memory pressure", "P3"),
    ] {
        let (status, created) = server
            .post(
                "/api/v1/alerts",
                json!({"source": "api", "severity": severity, "title": title, "labels": {"team": "db"}}),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().expect("id").to_owned());
    }
    let (status, _) = server
        .put_empty(&format!("/api/v1/alerts/{}/acknowledge", ids[0]))
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .put_empty(&format!("/api/v1/alerts/{}/resolve", ids[2]))
        .await;
    assert_eq!(status, 200);
    let (status, summary) = server.get("/api/v1/alerts/summary").await;
    assert_eq!(status, 200);
    assert_eq!(
        summary,
        json!({"firing": {"P1": 1}, "acknowledged": {"P1": 1}})
    );

    let titles = |page: &Value| -> Vec<String> {
        page["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|alert| alert["title"].as_str().expect("title").to_owned())
            .collect()
    };
    let (_, page) = server.get("/api/v1/alerts?q=DISK").await;
    assert_eq!(page["total"], 2, "{page}");
    let (_, page) = server.get("/api/v1/alerts?q=100%25").await;
    assert_eq!(titles(&page), ["Disk 100% full on db-1"], "% is itself");
    let (_, page) = server.get("/api/v1/alerts?q=k_u").await;
    assert_eq!(titles(&page), ["disk_usage high on db-2"], "_ is itself");
    let (_, page) = server.get("/api/v1/alerts?q=%5C").await;
    assert_eq!(page["total"], 0, "a backslash is itself: {page}");
    let (status, error) = server
        .get(&format!("/api/v1/alerts?q={}", "x".repeat(201)))
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(error["error"].as_str().is_some_and(|e| e.contains("`q`")));

    let (status, _) = server
        .post(
            "/api/v2/silences",
            json!({"matchers": [{"name": "team", "value": "db", "isRegex": false}],
                   "startsAt": "2020-01-01T00:00:00Z", "endsAt": "2999-01-01T00:00:00Z",
                   "createdBy": "ops", "comment": "maintenance"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, silences) = server
        .get(&format!("/api/v1/alerts/{}/silences", ids[1]))
        .await;
    assert_eq!(status, 200);
    assert_eq!(silences.as_array().map(Vec::len), Some(1), "{silences}");
    assert_eq!(silences[0]["status"]["state"], "active");
    let (status, _) = server
        .get("/api/v1/alerts/00000000-0000-0000-0000-000000000000/silences")
        .await;
    assert_eq!(status, 404);

    let (status, delivery) = server.get("/api/v1/notifications/status").await;
    assert_eq!(status, 200);
    assert_eq!(delivery["receivers"][0]["name"], "slack");
    assert_eq!(delivery["receivers"][0]["configured"], false);
    let (status, session) = server.get("/api/v1/console").await;
    assert_eq!(status, 200);
    assert_eq!(
        session["caller"]["access"], "admin",
        "no tokens: everything"
    );
    let (status, hosts) = server.get("/api/v1/hosts").await;
    assert_eq!(status, 200);
    assert!(hosts["source"].is_null(), "{hosts}");
    server.stop().await;
}

/// A token removed from `alerting.auth.tokens_file` is refused, and one added is accepted, without a restart (a
/// rotated Kubernetes Secret). A file that no longer loads (emptied, not YAML, an empty token, deleted) keeps the
/// tokens in force: the API never opens, and the failures are counted.
#[tokio::test]
async fn a_rotated_tokens_file_takes_effect_and_a_broken_one_never_opens_the_api() {
    let database = Database::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("tokens.yaml");
    let write = |text: &str| std::fs::write(&file, text).expect("write tokens file");
    write("- {name: old, token: old-secret, access: read}\n");
    let mut config = gomon_alerting::Config::default();
    config.database = database.config.clone();
    config.auth.tokens_file = Some(file.clone());
    config.auth.reload_interval = Duration::from_millis(100);
    let server = Server::start_service(config).await;
    let status = |token: Option<&'static str>| {
        let mut request = server.client.get(server.url("/api/v1/alerts"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.expect("request").status().as_u16() }
    };
    assert_eq!(status(Some("old-secret")).await, 200);
    assert_eq!(status(Some("new-secret")).await, 401);

    write("- {name: new, token: new-secret, access: read}\n");
    let mut rotated = false;
    for _ in 0..100 {
        if status(Some("new-secret")).await == 200 {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rotated, "the new token was never accepted");
    assert_eq!(
        status(Some("old-secret")).await,
        401,
        "a removed token still works"
    );

    let broken = [
        "",
        "[]\n",
        "- {name: x, token: [unclosed\n",
        "- {name: x, token: '  ', access: read}\n",
    ];
    for text in broken {
        write(text);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            status(Some("new-secret")).await,
            200,
            "{text:?} dropped the tokens in force"
        );
        assert_eq!(status(None).await, 401, "{text:?} opened the API");
        assert_eq!(status(Some("old-secret")).await, 401, "{text:?}");
    }
    std::fs::remove_file(&file).expect("remove tokens file");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(None).await, 401, "a deleted file opened the API");
    assert_eq!(status(Some("new-secret")).await, 200);
    let metrics = server.url("/metrics");
    assert_eq!(
        gomon_testkit::metric(&metrics, "alerting_auth_reloads_total{result=\"failure\"}").await,
        Some(5.0)
    );
    assert_eq!(
        gomon_testkit::metric(&metrics, "alerting_auth_reloads_total{result=\"success\"}").await,
        Some(1.0)
    );
    assert_eq!(
        gomon_testkit::metric(&metrics, "alerting_auth_tokens").await,
        Some(1.0)
    );
    server.stop().await;
}
