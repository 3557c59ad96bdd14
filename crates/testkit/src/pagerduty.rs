//! A stand-in for PagerDuty's Events API v2 (`POST /v2/enqueue`) on a free local port. It checks every event as
//! PagerDuty documents it (a 32-character `routing_key`; `event_action` `trigger`, `acknowledge` or `resolve`; a
//! `dedup_key` of at most 255 characters, required to acknowledge or resolve; a trigger's `payload` with `summary`
//! of 1 to 1024 characters, `source` and `severity` `critical`, `error`, `warning` or `info`; at most 512 KB),
//! answers `202 {"status": "success", "message": "Event processed", "dedup_key": ...}` or
//! `400 {"status": "invalid event", "message": "Event object is invalid", "errors": [...]}` as PagerDuty does,
//! records every request, and can be told to fail. It runs on the calling test's tokio runtime.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::stand_in::{self, Request, StandIn, lock};

/// Path the stand-in serves, as PagerDuty's.
pub const PATH: &str = "/v2/enqueue";

/// Largest event PagerDuty takes.
pub const MAX_EVENT_BYTES: usize = 512 * 1024;

pub use crate::stand_in::Behaviour;

/// One request received.
#[derive(Clone, Debug)]
pub struct Received {
    /// The body, parsed (`Value::Null` when it is not JSON).
    pub event: Value,
    /// Why PagerDuty would refuse it; empty when it would not.
    pub problems: Vec<String>,
    /// Whether it was answered with 2xx.
    pub accepted: bool,
}

impl Request for Received {
    fn body(&self) -> &Value {
        &self.event
    }
    fn problems(&self) -> &[String] {
        &self.problems
    }
    fn accepted(&self) -> bool {
        self.accepted
    }
}

type Shared = stand_in::Shared<Received>;

/// The running stand-in (its `url`, the Events API's: `http://127.0.0.1:PORT/v2/enqueue`); stops when dropped.
pub type FakePagerDuty = StandIn<Received>;

impl StandIn<Received> {
    /// Starts a stand-in that accepts every valid event.
    pub async fn start() -> FakePagerDuty {
        let shared = stand_in::shared();
        let router = Router::new()
            .route(PATH, post(receive))
            .with_state(shared.clone());
        StandIn::serve(router, shared, PATH, "PagerDuty stand-in").await
    }
}

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let (event, mut problems) = match serde_json::from_slice::<Value>(&body) {
        Ok(event) => {
            let problems = check(&event);
            (event, problems)
        }
        Err(error) => (Value::Null, vec![format!("body is not JSON: {error}")]),
    };
    if !json_body {
        problems.push("Content-Type is not application/json".into());
    }
    if body.len() > MAX_EVENT_BYTES {
        problems.push(format!("event of {} bytes, over 512 KB", body.len()));
    }
    let mut inner = lock(&shared);
    let behaviour = inner.behaviour;
    let accepted = problems.is_empty() && behaviour == Behaviour::Accept;
    let dedup_key = event["dedup_key"].clone();
    inner.received.push(Received {
        event,
        problems: problems.clone(),
        accepted,
    });
    drop(inner);
    if !problems.is_empty() {
        let answer = json!({"status": "invalid event", "message": "Event object is invalid", "errors": problems});
        return (StatusCode::BAD_REQUEST, axum::Json(answer)).into_response();
    }
    match behaviour {
        Behaviour::Accept => {
            let answer =
                json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key});
            (StatusCode::ACCEPTED, axum::Json(answer)).into_response()
        }
        Behaviour::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, "stand-in failure").into_response()
        }
    }
}

/// Why PagerDuty would refuse `event`; empty when it would not.
pub fn check(event: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(fields) = event.as_object() else {
        return vec!["the event is not an object".into()];
    };
    let known = [
        "routing_key",
        "event_action",
        "dedup_key",
        "payload",
        "images",
        "links",
        "client",
        "client_url",
    ];
    for name in fields.keys() {
        if !known.contains(&name.as_str()) {
            problems.push(format!("unknown field {name:?}"));
        }
    }
    match event["routing_key"].as_str() {
        Some(key) if key.chars().count() == 32 => {}
        _ => problems.push("Length of 'routing_key' is incorrect (should be 32 characters)".into()),
    }
    let action = event["event_action"].as_str().unwrap_or_default();
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        problems.push(format!("'event_action' is invalid: {action:?}"));
    }
    match &event["dedup_key"] {
        Value::String(key) if !key.is_empty() && key.chars().count() <= 255 => {}
        Value::Null if action == "trigger" => {}
        other => problems.push(format!("'dedup_key' must be 1 to 255 characters: {other}")),
    }
    for name in ["client", "client_url"] {
        if !matches!(event[name], Value::Null | Value::String(_)) {
            problems.push(format!("'{name}' is not a string"));
        }
    }
    if let Some(links) = fields.get("links") {
        let valid = links.as_array().is_some_and(|links| {
            links.iter().all(|link| {
                link["href"]
                    .as_str()
                    .is_some_and(|href| href.starts_with("http"))
                    && matches!(link["text"], Value::Null | Value::String(_))
            })
        });
        if !valid {
            problems.push("'links' must be a list of {href, text}".into());
        }
    }
    if action != "trigger" {
        return problems;
    }
    let payload = &event["payload"];
    if !payload.is_object() {
        problems.push("'payload' is missing".into());
        return problems;
    }
    match payload["summary"].as_str() {
        Some(summary) if (1..=1024).contains(&summary.chars().count()) => {}
        _ => problems.push("'payload.summary' must be 1 to 1024 characters".into()),
    }
    if payload["source"].as_str().is_none_or(str::is_empty) {
        problems.push("'payload.source' is missing".into());
    }
    let severity = payload["severity"].as_str().unwrap_or_default();
    if !["critical", "error", "warning", "info"].contains(&severity) {
        problems.push(format!("'payload.severity' is invalid: {severity:?}"));
    }
    if let Some(timestamp) = payload.get("timestamp")
        && timestamp
            .as_str()
            .is_none_or(|t| chrono::DateTime::parse_from_rfc3339(t).is_err())
    {
        problems.push(format!("'payload.timestamp' is not ISO 8601: {timestamp}"));
    }
    for name in ["component", "group", "class"] {
        if !matches!(payload[name], Value::Null | Value::String(_)) {
            problems.push(format!("'payload.{name}' is not a string"));
        }
    }
    if !matches!(payload["custom_details"], Value::Null | Value::Object(_)) {
        problems.push("'payload.custom_details' is not an object".into());
    }
    problems
}
