//! A fake Slack on a free local port, speaking Slack's wire formats: incoming webhooks
//! (`POST /services/T.../B.../...`, answering `ok` or an error code as text) and the Web API's `chat.postMessage`
//! (`POST /api/chat.postMessage`, answering `{"ok": ...}`) and `chat.update` (`POST /api/chat.update`, which edits a
//! message it posted, or answers `message_not_found`). Its behaviour is set per test, and it records every request
//! it receives, and what each message it posted says now. It runs on the calling test's tokio runtime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// Path of the fake's incoming webhook.
pub const WEBHOOK_PATH: &str = "/services/T000/B000/XXXX";
/// Channel id the fake answers with.
pub const CHANNEL_ID: &str = "C0123";

/// How the fake answers.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Accepts the message.
    Ok,
    /// 500 `internal_error`.
    ServerError,
    /// 429 with `Retry-After`; body `rate_limited` (webhook) or `{"ok":false,"error":"ratelimited"}` (Web API).
    RateLimited {
        /// The `Retry-After` it answers, in seconds.
        retry_after_secs: u64,
    },
    /// Sleeps, then accepts.
    Slow(Duration),
    /// Answers with this HTTP status and text body (webhook errors: 400 `no_text`, 403 `invalid_token`, ...).
    WebhookError {
        /// The HTTP status.
        status: u16,
        /// The text body.
        body: &'static str,
    },
    /// HTTP 200 `{"ok":false,"error":...}` (a webhook gets 400 with the code as its body).
    ApiError(&'static str),
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Received {
    /// `webhook` or `api`.
    pub via: &'static str,
    /// The `channel` field, when given.
    pub channel: Option<String>,
    /// The `thread_ts` field: the message this one replies to.
    pub thread_ts: Option<String>,
    /// The `text` field.
    pub text: String,
    /// The `blocks` field (Block Kit), `null` when absent.
    pub blocks: Value,
    /// The `Authorization` header as sent.
    pub authorization: Option<String>,
    /// The `ts` the fake answered with, when it accepted a Web API message.
    pub ts: Option<String>,
    /// Whether it was answered with success.
    pub accepted: bool,
}

#[derive(Default)]
struct Inner {
    default: Option<Behaviour>,
    per_channel: HashMap<String, Behaviour>,
    received: Vec<Received>,
    messages: u64,
    /// Every `chat.update` accepted, in arrival order.
    updates: Vec<Received>,
    /// What each message posted through the Web API says now, by `ts` (after its updates).
    current: HashMap<String, Received>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The running fake; stops when dropped.
pub struct FakeSlack {
    /// Incoming webhook URL: `http://127.0.0.1:PORT/services/T000/B000/XXXX`.
    pub webhook_url: String,
    /// Web API base URL: `http://127.0.0.1:PORT/api`.
    pub api_url: String,
    shared: Shared,
    task: JoinHandle<()>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSlack {
    /// Starts a fake that accepts everything.
    pub async fn start() -> FakeSlack {
        let shared = Shared::default();
        let router = Router::new()
            .route("/services/{*path}", post(webhook))
            .route("/api/chat.postMessage", post(post_message))
            .route("/api/chat.update", post(update_message))
            .with_state(shared.clone());
        let (address, task) = crate::serve_local(router, "fake Slack").await;
        FakeSlack {
            webhook_url: format!("http://{address}{WEBHOOK_PATH}"),
            api_url: format!("http://{address}/api"),
            shared,
            task,
        }
    }

    /// How every request is answered from now on (unless its channel has its own behaviour).
    pub fn set(&self, behaviour: Behaviour) {
        lock(&self.shared).default = Some(behaviour);
    }

    /// How Web API requests for `channel` are answered from now on.
    pub fn set_for_channel(&self, channel: &str, behaviour: Behaviour) {
        lock(&self.shared)
            .per_channel
            .insert(channel.to_owned(), behaviour);
    }

    /// Every request received, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared).received.clone()
    }

    /// The requests answered with success, in arrival order.
    pub fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|received| received.accepted)
            .collect()
    }

    /// How many requests were received.
    pub fn requests(&self) -> usize {
        lock(&self.shared).received.len()
    }

    /// Every `chat.update` accepted, in arrival order (`ts`: the message it edited).
    pub fn updates(&self) -> Vec<Received> {
        lock(&self.shared).updates.clone()
    }

    /// What the message posted with `ts` says now, after its updates.
    pub fn message(&self, ts: &str) -> Option<Received> {
        lock(&self.shared).current.get(ts).cloned()
    }
}

async fn update_message(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let payload = serde_json::from_slice::<Value>(&body).ok();
    let Some(payload) = payload.filter(|_| {
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json"))
    }) else {
        return api_error("invalid_form_data");
    };
    if authorization(&headers)
        .as_deref()
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_none_or(|token| token.trim().is_empty())
    {
        return api_error("not_authed");
    }
    if !has_content(&payload) {
        return api_error("no_text");
    }
    let (Some(channel), Some(ts)) = (payload["channel"].as_str(), payload["ts"].as_str()) else {
        return api_error("invalid_arguments");
    };
    let mut inner = lock(&shared);
    let Some(current) = inner.current.get_mut(ts) else {
        return api_error("message_not_found");
    };
    if channel != CHANNEL_ID {
        return api_error("channel_not_found");
    }
    current.text = payload["text"].as_str().unwrap_or_default().to_owned();
    current.blocks = payload["blocks"].clone();
    let updated = Received {
        via: "update",
        channel: Some(channel.to_owned()),
        thread_ts: None,
        text: current.text.clone(),
        blocks: current.blocks.clone(),
        authorization: authorization(&headers),
        ts: Some(ts.to_owned()),
        accepted: true,
    };
    inner.updates.push(updated);
    axum::Json(json!({"ok": true, "channel": channel, "ts": ts, "text": payload["text"]}))
        .into_response()
}

fn text_response(status: u16, body: &'static str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, body).into_response()
}

fn api_error(error: &str) -> Response {
    axum::Json(json!({"ok": false, "error": error})).into_response()
}

/// Records a request, returning its index and how to answer it.
fn record(shared: &Shared, mut received: Received, channel_behaviour: bool) -> (usize, Behaviour) {
    let mut inner = lock(shared);
    let behaviour = received
        .channel
        .as_ref()
        .filter(|_| channel_behaviour)
        .and_then(|channel| inner.per_channel.get(channel).cloned())
        .or_else(|| inner.default.clone())
        .unwrap_or(Behaviour::Ok);
    received.accepted = false;
    inner.received.push(received);
    (inner.received.len() - 1, behaviour)
}

/// Marks request `index` accepted, with the `ts` it was given.
fn accept(shared: &Shared, index: usize, ts: Option<String>) {
    let mut inner = lock(shared);
    if let Some(received) = inner.received.get_mut(index) {
        received.accepted = true;
        received.ts = ts;
    }
}

fn next_ts(shared: &Shared) -> String {
    let mut inner = lock(shared);
    inner.messages += 1;
    format!("1732500000.{:06}", inner.messages * 100)
}

fn authorization(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

fn has_content(payload: &Value) -> bool {
    payload["text"]
        .as_str()
        .is_some_and(|text| !text.is_empty())
        || payload["blocks"]
            .as_array()
            .is_some_and(|blocks| !blocks.is_empty())
}

async fn webhook(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return text_response(400, "invalid_payload");
    };
    let received = Received {
        via: "webhook",
        channel: payload["channel"].as_str().map(str::to_owned),
        thread_ts: payload["thread_ts"].as_str().map(str::to_owned),
        text: payload["text"].as_str().unwrap_or_default().to_owned(),
        blocks: payload["blocks"].clone(),
        authorization: authorization(&headers),
        ts: None,
        accepted: false,
    };
    let (index, behaviour) = record(&shared, received, false);
    if !has_content(&payload) {
        return text_response(400, "no_text");
    }
    match behaviour {
        Behaviour::Ok => {}
        Behaviour::Slow(delay) => tokio::time::sleep(delay).await,
        Behaviour::ServerError => return text_response(500, "internal_error"),
        Behaviour::RateLimited { retry_after_secs } => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, retry_after_secs.to_string())],
                "rate_limited",
            )
                .into_response();
        }
        Behaviour::WebhookError { status, body } => return text_response(status, body),
        Behaviour::ApiError(error) => return text_response(400, error),
    }
    accept(&shared, index, None);
    text_response(200, "ok")
}

async fn post_message(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let payload = if json_body {
        serde_json::from_slice::<Value>(&body).ok()
    } else {
        None
    };
    let Some(payload) = payload else {
        return api_error("invalid_form_data");
    };
    let received = Received {
        via: "api",
        channel: payload["channel"].as_str().map(str::to_owned),
        thread_ts: payload["thread_ts"].as_str().map(str::to_owned),
        text: payload["text"].as_str().unwrap_or_default().to_owned(),
        blocks: payload["blocks"].clone(),
        authorization: authorization(&headers),
        ts: None,
        accepted: false,
    };
    let bearer = received
        .authorization
        .as_deref()
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|token| !token.trim().is_empty());
    let channel_given = received.channel.as_deref().is_some_and(|c| !c.is_empty());
    let (index, behaviour) = record(&shared, received, true);
    if !bearer {
        return api_error("not_authed");
    }
    if !channel_given {
        return api_error("channel_not_found");
    }
    if !has_content(&payload) {
        return api_error("no_text");
    }
    match behaviour {
        Behaviour::Ok => {}
        Behaviour::Slow(delay) => tokio::time::sleep(delay).await,
        Behaviour::ServerError => return text_response(500, "internal_error"),
        Behaviour::RateLimited { retry_after_secs } => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, retry_after_secs.to_string())],
                axum::Json(json!({"ok": false, "error": "ratelimited"})),
            )
                .into_response();
        }
        Behaviour::WebhookError { status, body } => return text_response(status, body),
        Behaviour::ApiError(error) => return api_error(error),
    }
    let ts = next_ts(&shared);
    accept(&shared, index, Some(ts.clone()));
    {
        let mut inner = lock(&shared);
        if let Some(posted) = inner.received.get(index).cloned() {
            inner.current.insert(ts.clone(), posted);
        }
    }
    let mut message = json!({
        "type": "message",
        "subtype": "bot_message",
        "bot_id": "B0123",
        "text": payload["text"],
        "blocks": payload["blocks"],
        "ts": ts,
    });
    if let (Some(thread_ts), Some(object)) =
        (payload["thread_ts"].as_str(), message.as_object_mut())
    {
        object.insert("thread_ts".to_owned(), Value::from(thread_ts));
    }
    axum::Json(json!({"ok": true, "channel": CHANNEL_ID, "ts": ts, "message": message}))
        .into_response()
}
