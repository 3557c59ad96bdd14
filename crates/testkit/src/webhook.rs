//! A stand-in for a receiver of Alertmanager's webhook (payload version 4) on a free local port. It checks every
//! request strictly against the format (every field present, of its type, nothing else), answers 400 to one that
//! is not, records every request, and can be told to fail. It runs on the calling test's tokio runtime.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value};

use crate::stand_in::{self, Request, StandIn, lock};

/// Path the stand-in serves.
pub const PATH: &str = "/hooks/gomon";

pub use crate::stand_in::Behaviour;

/// One request received.
#[derive(Clone, Debug)]
pub struct Received {
    /// The body, parsed (`Value::Null` when it is not JSON).
    pub payload: Value,
    /// Why it is not a valid version 4 payload; empty when it is.
    pub problems: Vec<String>,
    /// The `Authorization` header as sent.
    pub authorization: Option<String>,
    /// The `Content-Type` header as sent.
    pub content_type: Option<String>,
    /// Whether it was answered with 2xx.
    pub accepted: bool,
}

impl Request for Received {
    fn body(&self) -> &Value {
        &self.payload
    }
    fn problems(&self) -> &[String] {
        &self.problems
    }
    fn accepted(&self) -> bool {
        self.accepted
    }
}

type Shared = stand_in::Shared<Received>;

/// The running stand-in (its `url`: `http://127.0.0.1:PORT/hooks/gomon`); stops when dropped.
pub type WebhookReceiver = StandIn<Received>;

impl StandIn<Received> {
    /// Starts a stand-in that accepts every valid payload.
    pub async fn start() -> WebhookReceiver {
        let shared = stand_in::shared();
        let router = Router::new()
            .route(PATH, post(receive))
            .with_state(shared.clone());
        StandIn::serve(router, shared, PATH, "webhook receiver").await
    }
}

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let header_text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header_text(header::CONTENT_TYPE);
    let (payload, mut problems) = match serde_json::from_slice::<Value>(&body) {
        Ok(payload) => {
            let problems = check(&payload);
            (payload, problems)
        }
        Err(error) => (Value::Null, vec![format!("body is not JSON: {error}")]),
    };
    if !content_type
        .as_deref()
        .is_some_and(|value| value.starts_with("application/json"))
    {
        problems.push(format!(
            "Content-Type is {content_type:?}, not application/json"
        ));
    }
    let mut inner = lock(&shared);
    let behaviour = inner.behaviour;
    let valid = problems.is_empty();
    let (status, accepted) = match behaviour {
        _ if !valid => (StatusCode::BAD_REQUEST, false),
        Behaviour::Accept => (StatusCode::OK, true),
        Behaviour::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, status.is_success())
        }
    };
    let answer = if valid {
        "ok".to_owned()
    } else {
        problems.join("; ")
    };
    inner.received.push(Received {
        payload,
        problems,
        authorization: header_text(header::AUTHORIZATION),
        content_type,
        accepted,
    });
    (status, answer).into_response()
}

/// Why `payload` is not Alertmanager's webhook payload version 4: every field of the message and of each alert
/// present with its type, no other field, statuses `firing` or `resolved`, times in RFC 3339.
pub fn check(payload: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(message) = payload.as_object() else {
        return vec!["the payload is not an object".to_owned()];
    };
    exact_fields(
        "message",
        message,
        &[
            "version",
            "groupKey",
            "truncatedAlerts",
            "status",
            "receiver",
            "groupLabels",
            "commonLabels",
            "commonAnnotations",
            "externalURL",
            "alerts",
        ],
        &mut problems,
    );
    if message.get("version") != Some(&Value::from("4")) {
        problems.push(format!(
            "version is {:?}, not \"4\"",
            message.get("version")
        ));
    }
    for key in ["groupKey", "receiver", "externalURL"] {
        string_field("message", message, key, &mut problems);
    }
    if !message.get("truncatedAlerts").is_some_and(Value::is_u64) {
        problems.push("truncatedAlerts is not a non-negative integer".to_owned());
    }
    status_field("message", message, &mut problems);
    for key in ["groupLabels", "commonLabels", "commonAnnotations"] {
        string_map("message", message, key, &mut problems);
    }
    match message.get("alerts").and_then(Value::as_array) {
        Some(alerts) if !alerts.is_empty() => {
            for (index, alert) in alerts.iter().enumerate() {
                let at = format!("alerts[{index}]");
                let Some(alert) = alert.as_object() else {
                    problems.push(format!("{at} is not an object"));
                    continue;
                };
                exact_fields(
                    &at,
                    alert,
                    &[
                        "status",
                        "labels",
                        "annotations",
                        "startsAt",
                        "endsAt",
                        "generatorURL",
                        "fingerprint",
                    ],
                    &mut problems,
                );
                status_field(&at, alert, &mut problems);
                string_map(&at, alert, "labels", &mut problems);
                string_map(&at, alert, "annotations", &mut problems);
                for key in ["generatorURL", "fingerprint"] {
                    string_field(&at, alert, key, &mut problems);
                }
                for key in ["startsAt", "endsAt"] {
                    let time = alert.get(key).and_then(Value::as_str).unwrap_or_default();
                    if chrono::DateTime::parse_from_rfc3339(time).is_err() {
                        problems.push(format!("{at}.{key} {time:?} is not an RFC 3339 time"));
                    }
                }
            }
        }
        _ => problems.push("alerts is not a non-empty array".to_owned()),
    }
    problems
}

fn exact_fields(
    at: &str,
    object: &Map<String, Value>,
    fields: &[&str],
    problems: &mut Vec<String>,
) {
    for field in fields {
        if !object.contains_key(*field) {
            problems.push(format!("{at}: {field} is missing"));
        }
    }
    for key in object.keys() {
        if !fields.contains(&key.as_str()) {
            problems.push(format!("{at}: unknown field {key}"));
        }
    }
}

fn string_field(at: &str, object: &Map<String, Value>, key: &str, problems: &mut Vec<String>) {
    if !object.get(key).is_some_and(Value::is_string) {
        problems.push(format!("{at}.{key} is not a string"));
    }
}

fn status_field(at: &str, object: &Map<String, Value>, problems: &mut Vec<String>) {
    let status = object.get("status").and_then(Value::as_str);
    if !matches!(status, Some("firing" | "resolved")) {
        problems.push(format!("{at}.status {status:?} is not firing or resolved"));
    }
}

fn string_map(at: &str, object: &Map<String, Value>, key: &str, problems: &mut Vec<String>) {
    match object.get(key).and_then(Value::as_object) {
        Some(map) if map.values().all(Value::is_string) => {}
        _ => problems.push(format!("{at}.{key} is not an object of strings")),
    }
}
