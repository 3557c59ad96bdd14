//! Slack: configuration (`alerting.slack`), rendering of alert events as Block Kit messages, and the HTTP client
//! that posts them through an incoming webhook or the Web API's `chat.postMessage`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::{Alert, Severity, truncate};
use crate::notify::breaker::BreakerConfig;

/// Slack's limit on a header block's text, in characters.
pub const MAX_HEADER: usize = 150;
/// Slack's limit on a section's text, in characters.
pub const MAX_TEXT: usize = 3000;
/// Slack's limit on one section field's text, in characters.
pub const MAX_FIELD: usize = 2000;
/// Longest `Retry-After` honoured; longer values are capped to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Slack notifications (`alerting.slack`). Nothing is sent unless a webhook URL or a bot token is configured.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlackConfig {
    /// Incoming webhook URL (a secret). Its channel is fixed by Slack, so `routes` only decide what is sent.
    pub webhook_url: Option<String>,
    /// File holding the webhook URL (a mounted Kubernetes Secret).
    pub webhook_url_file: Option<PathBuf>,
    /// Bot token for the Web API (`chat.postMessage`); preferred over the webhook when both are set.
    pub bot_token: Option<String>,
    /// File holding the bot token.
    pub bot_token_file: Option<PathBuf>,
    /// Base URL of the Web API.
    pub api_url: String,
    /// Longest time one HTTP request to Slack may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Which channel each severity goes to; the first route listing a severity wins. Unlisted severities are not
    /// notified.
    pub routes: Vec<Route>,
    /// Base URL of this API, for the "View alert" link (`{public_url}/api/v1/alerts/{id}`).
    pub public_url: Option<String>,
    /// A Grafana link added to every message, used as given.
    pub grafana_url: Option<String>,
    /// Base URL of Jaeger, for the trace link (`{jaeger_url}/trace/{jaeger_trace_id}`).
    pub jaeger_url: Option<String>,
    /// When to stop sending while Slack is failing.
    pub circuit_breaker: BreakerConfig,
}

/// Where alerts of some severities are posted.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The severities this route takes.
    pub severities: Vec<Severity>,
    /// Channel name (`#alerts`) or id (`C0123`).
    pub channel: String,
}

impl Default for SlackConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_url_file: None,
            bot_token: None,
            bot_token_file: None,
            api_url: "https://slack.com/api".to_owned(),
            timeout: Duration::from_secs(10),
            routes: vec![
                Route {
                    severities: vec![Severity::P1, Severity::P2],
                    channel: "#alerts-critical".to_owned(),
                },
                Route {
                    severities: vec![Severity::P3, Severity::P4],
                    channel: "#alerts".to_owned(),
                },
            ],
            public_url: None,
            grafana_url: None,
            jaeger_url: None,
            circuit_breaker: BreakerConfig::default(),
        }
    }
}

impl fmt::Debug for SlackConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackConfig")
            .field(
                "webhook_url",
                &self.webhook_url.as_ref().map(|_| "<redacted>"),
            )
            .field("webhook_url_file", &self.webhook_url_file)
            .field("bot_token", &self.bot_token.as_ref().map(|_| "<redacted>"))
            .field("bot_token_file", &self.bot_token_file)
            .field("api_url", &self.api_url)
            .field("timeout", &self.timeout)
            .field("routes", &self.routes)
            .field("public_url", &self.public_url)
            .field("grafana_url", &self.grafana_url)
            .field("jaeger_url", &self.jaeger_url)
            .field("circuit_breaker", &self.circuit_breaker)
            .finish()
    }
}

impl SlackConfig {
    /// The channel alerts of `severity` go to; `None` when this severity is not notified.
    pub fn channel_for(&self, severity: Severity) -> Option<&str> {
        self.routes
            .iter()
            .find(|route| route.severities.contains(&severity))
            .map(|route| route.channel.as_str())
    }

    /// Checks what types alone cannot: secrets readable and set once, URLs valid, routes complete, durations in
    /// range. The message names the key and never contains a secret.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.webhook_url()?.is_some_and(|url| !is_http_url(&url)) {
            anyhow::bail!("alerting.slack.webhook_url: not an http(s) URL");
        }
        self.bot_token()?;
        if !is_http_url(&self.api_url) {
            anyhow::bail!(
                "alerting.slack.api_url: {:?} is not an http(s) URL",
                self.api_url
            );
        }
        let links = [
            ("alerting.slack.public_url", &self.public_url),
            ("alerting.slack.grafana_url", &self.grafana_url),
            ("alerting.slack.jaeger_url", &self.jaeger_url),
        ];
        for (key, value) in links {
            if let Some(value) = value.as_deref().filter(|value| !is_http_url(value)) {
                anyhow::bail!("{key}: {value:?} is not an http(s) URL");
            }
        }
        if self.timeout < Duration::from_millis(1) {
            anyhow::bail!(
                "alerting.slack.timeout: must be at least 1ms, not {:?}",
                self.timeout
            );
        }
        for (index, route) in self.routes.iter().enumerate() {
            if route.channel.trim().is_empty() {
                anyhow::bail!("alerting.slack.routes[{index}].channel: must not be empty");
            }
            if route.severities.is_empty() {
                anyhow::bail!("alerting.slack.routes[{index}].severities: must list at least one");
            }
        }
        self.circuit_breaker.check("alerting.slack.circuit_breaker")
    }

    /// The webhook URL from `webhook_url` or `webhook_url_file`, trimmed.
    fn webhook_url(&self) -> anyhow::Result<Option<String>> {
        load_secret("webhook_url", &self.webhook_url, &self.webhook_url_file)
    }

    /// The bot token from `bot_token` or `bot_token_file`, trimmed.
    fn bot_token(&self) -> anyhow::Result<Option<String>> {
        load_secret("bot_token", &self.bot_token, &self.bot_token_file)
    }
}

/// The secret `alerting.slack.{key}`, inline or from `{key}_file` (see [`gomon_runtime::config::secret`]).
fn load_secret(
    key: &str,
    inline: &Option<String>,
    file: &Option<PathBuf>,
) -> anyhow::Result<Option<String>> {
    Ok(gomon_runtime::config::secret(
        &format!("alerting.slack.{key}"),
        inline.as_deref(),
        file.as_deref(),
    )?)
}

fn is_http_url(text: &str) -> bool {
    reqwest::Url::parse(text)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
}

/// What happened to an alert, as notified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// It fired.
    Created,
    /// Someone took it.
    Acknowledged,
    /// Someone was made its owner.
    Assigned,
    /// It is over.
    Resolved,
}

impl Event {
    /// The name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Created => "created",
            Event::Acknowledged => "acknowledged",
            Event::Assigned => "assigned",
            Event::Resolved => "resolved",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Slack message: the plain fallback `text` (notifications, clients without blocks) and the Block Kit `blocks`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Message {
    /// Fallback text, escaped for Slack.
    pub text: String,
    /// The Block Kit blocks (a JSON array).
    pub blocks: Value,
}

/// Escapes `&`, `<` and `>` as Slack requires in mrkdwn text.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        push_escaped(&mut escaped, c);
    }
    escaped
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => out.push(c),
    }
}

/// Escapes `text` and cuts it to at most `max` characters, ending in `…` when cut, never inside an escape.
fn escape_truncated(text: &str, max: usize) -> String {
    let escaped = escape(text);
    if escaped.chars().count() <= max {
        return escaped;
    }
    let budget = max.saturating_sub(1);
    let mut out = String::new();
    let mut length = 0;
    for c in text.chars() {
        let mut piece = String::new();
        push_escaped(&mut piece, c);
        let piece_length = piece.chars().count();
        if length + piece_length > budget {
            break;
        }
        out.push_str(&piece);
        length += piece_length;
    }
    out.push('…');
    out
}

/// Percent-encodes `text` for use as one URL path segment.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

fn emoji(event: Event, severity: Severity) -> &'static str {
    match (event, severity) {
        (Event::Created, Severity::P1) => ":rotating_light:",
        (Event::Created, Severity::P2) => ":red_circle:",
        (Event::Created, Severity::P3) => ":warning:",
        (Event::Created, Severity::P4) => ":information_source:",
        (Event::Acknowledged, _) => ":eyes:",
        (Event::Assigned, _) => ":bust_in_silhouette:",
        (Event::Resolved, _) => ":white_check_mark:",
    }
}

fn field(name: &str, value: &str) -> Value {
    let label = format!("*{name}*\n");
    let budget = MAX_FIELD.saturating_sub(label.chars().count());
    json!({"type": "mrkdwn", "text": label + &escape_truncated(value, budget)})
}

fn button(text: &str, action_id: &str, url: String) -> Value {
    json!({
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text},
        "url": url,
    })
}

/// Renders `event` on `alert` as a Slack message. `actor` is who caused the event, `note` an optional comment.
pub fn render(
    alert: &Alert,
    event: Event,
    actor: Option<&str>,
    note: Option<&str>,
    config: &SlackConfig,
) -> Message {
    let severity = alert.severity.as_str();
    let actor = non_empty(actor);
    let actor = match event {
        Event::Acknowledged => actor.or(non_empty(alert.acknowledged_by.as_deref())),
        _ => actor,
    };
    let assigned_to = non_empty(alert.assigned_to.as_deref());
    let what = match (event, actor, assigned_to) {
        (Event::Created, ..) => "FIRING".to_owned(),
        (Event::Acknowledged, Some(actor), _) => format!("ACKNOWLEDGED by {actor}"),
        (Event::Acknowledged, None, _) => "ACKNOWLEDGED".to_owned(),
        (Event::Assigned, _, Some(owner)) => format!("ASSIGNED to {owner}"),
        (Event::Assigned, ..) => "ASSIGNED".to_owned(),
        (Event::Resolved, Some(actor), _) => format!("RESOLVED by {actor}"),
        (Event::Resolved, None, _) => "RESOLVED".to_owned(),
    };
    let line = format!(
        "{} [{severity}] {what}: {}",
        emoji(event, alert.severity),
        alert.title
    );

    let time = match event {
        Event::Created => alert.created_at,
        _ => alert.updated_at,
    };
    let mut fields = vec![
        field("Severity", severity),
        field("Status", alert.status.as_str()),
    ];
    if let Some(namespace) = non_empty(alert.namespace.as_deref()) {
        fields.push(field("Namespace", namespace));
    }
    fields.push(field("Source", &alert.source));
    fields.push(field(
        "Time",
        &time.to_rfc3339_opts(SecondsFormat::Secs, true),
    ));
    if let Some(actor) = actor {
        fields.push(field("Actor", actor));
    }
    if let Some(owner) = assigned_to {
        fields.push(field("Assigned to", owner));
    }
    if let Some(note) = non_empty(note) {
        fields.push(field("Note", note));
    }

    let mut blocks = vec![
        json!({
            "type": "header",
            "text": {"type": "plain_text", "text": truncate(&line, MAX_HEADER), "emoji": true},
        }),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(description) = non_empty(alert.description.as_deref()) {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": escape_truncated(description, MAX_TEXT)},
        }));
    }
    if !alert.labels.is_empty() {
        let labels: Vec<String> = alert
            .labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": escape_truncated(&labels.join(", "), MAX_TEXT)}],
        }));
    }
    let mut buttons = Vec::new();
    if let Some(base) = non_empty(config.public_url.as_deref()) {
        let url = format!("{}/api/v1/alerts/{}", base.trim_end_matches('/'), alert.id);
        buttons.push(button("View alert", "view_alert", url));
    }
    if let (Some(base), Some(trace)) = (
        non_empty(config.jaeger_url.as_deref()),
        non_empty(alert.jaeger_trace_id.as_deref()),
    ) {
        let url = format!(
            "{}/trace/{}",
            base.trim_end_matches('/'),
            path_segment(trace)
        );
        buttons.push(button("Trace in Jaeger", "jaeger_trace", url));
    }
    if let Some(url) = non_empty(config.grafana_url.as_deref()) {
        buttons.push(button("Grafana", "grafana", url.to_owned()));
    }
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }

    Message {
        text: escape(&line),
        blocks: Value::Array(blocks),
    }
}

/// What became of one attempt to send a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Slack took it. `ts` and `channel` come from `chat.postMessage`'s answer (`None` for webhooks).
    Accepted {
        /// Timestamp that identifies the message (the `thread_ts` of replies to it).
        ts: Option<String>,
        /// Id of the channel it was posted in.
        channel: Option<String>,
    },
    /// Slack's fault (5xx, 429, timeout, connection error, a transient Web API error): try again later.
    Transient {
        /// What went wrong, without secrets.
        reason: String,
        /// How long Slack asked us to wait (`Retry-After`), if it did.
        retry_after: Option<Duration>,
    },
    /// Our request or configuration is wrong (another 4xx, a Web API error such as `channel_not_found`): retrying
    /// will not help.
    Permanent {
        /// The HTTP status and body, or the Web API error code.
        reason: String,
    },
}

impl Outcome {
    /// Whether this outcome says Slack is failing (feeds the circuit breaker): true only for [`Outcome::Transient`].
    pub fn counts_against_slack(&self) -> bool {
        matches!(self, Outcome::Transient { .. })
    }
}

/// Web API error codes that mean "Slack's fault, try again".
const TRANSIENT_API_ERRORS: [&str; 5] = [
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// Longest part of a response body kept in a reason.
const MAX_REASON_BODY: usize = 300;

enum Target {
    Webhook { url: String },
    WebApi { endpoint: String, token: String },
}

/// Sends messages to Slack through the Web API (bot token) or an incoming webhook.
pub struct SlackClient {
    http: reqwest::Client,
    target: Target,
    timeout: Duration,
}

impl fmt::Debug for SlackClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("SlackClient");
        match &self.target {
            Target::Webhook { .. } => debug
                .field("via", &"webhook")
                .field("webhook_url", &"<redacted>"),
            Target::WebApi { endpoint, .. } => debug
                .field("via", &"web_api")
                .field("endpoint", endpoint)
                .field("bot_token", &"<redacted>"),
        };
        debug.field("timeout", &self.timeout).finish()
    }
}

#[derive(Deserialize)]
struct ApiAnswer {
    ok: bool,
    error: Option<String>,
    ts: Option<String>,
    channel: Option<String>,
}

impl SlackClient {
    /// The client `config` describes; `None` when neither a webhook URL nor a bot token is configured. Prefers the
    /// Web API when a bot token is set. Reads the `*_file` secrets.
    pub fn new(config: &SlackConfig) -> anyhow::Result<Option<SlackClient>> {
        let target = if let Some(token) = config.bot_token()? {
            let endpoint = format!("{}/chat.postMessage", config.api_url.trim_end_matches('/'));
            Target::WebApi { endpoint, token }
        } else if let Some(url) = config.webhook_url()? {
            Target::Webhook { url }
        } else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gomon-alerting/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| {
                anyhow::anyhow!("alerting.slack: cannot build the HTTP client: {error}")
            })?;
        Ok(Some(SlackClient {
            http,
            target,
            timeout: config.timeout,
        }))
    }

    /// Whether messages go through the Web API (`chat.postMessage`) rather than an incoming webhook.
    pub fn uses_web_api(&self) -> bool {
        matches!(self.target, Target::WebApi { .. })
    }

    /// Sends `message` to `channel` (ignored by webhooks, whose channel is fixed), as a reply in `thread_ts`'s thread
    /// when given (Web API only).
    pub async fn send(&self, message: &Message, channel: &str, thread_ts: Option<&str>) -> Outcome {
        let outcome = match &self.target {
            Target::Webhook { url } => self.send_webhook(url, message).await,
            Target::WebApi { endpoint, token } => {
                self.send_api(endpoint, token, message, channel, thread_ts)
                    .await
            }
        };
        self.redact(outcome)
    }

    async fn send_webhook(&self, url: &str, message: &Message) -> Outcome {
        let body = json!({"text": message.text, "blocks": message.blocks});
        let response = match self.http.post(url).json(&body).send().await {
            Ok(response) => response,
            Err(error) => return self.request_failed(error),
        };
        let status = response.status();
        if status.is_success() {
            return Outcome::Accepted {
                ts: None,
                channel: None,
            };
        }
        let retry_after = retry_after(&response);
        let body = body_text(response).await;
        classify_status(status, &body, retry_after)
    }

    async fn send_api(
        &self,
        endpoint: &str,
        token: &str,
        message: &Message,
        channel: &str,
        thread_ts: Option<&str>,
    ) -> Outcome {
        let mut body = json!({"channel": channel, "text": message.text, "blocks": message.blocks});
        if let (Some(thread_ts), Some(object)) = (thread_ts, body.as_object_mut()) {
            object.insert("thread_ts".to_owned(), Value::from(thread_ts));
        }
        let request = self
            .http
            .post(endpoint)
            .bearer_auth(token)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(body.to_string());
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return self.request_failed(error),
        };
        let status = response.status();
        let retry_after = retry_after(&response);
        if !status.is_success() {
            let body = body_text(response).await;
            return classify_status(status, &body, retry_after);
        }
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(error) => return self.request_failed(error),
        };
        match serde_json::from_slice::<ApiAnswer>(&bytes) {
            Ok(ApiAnswer {
                ok: true,
                ts,
                channel,
                ..
            }) => Outcome::Accepted { ts, channel },
            Ok(ApiAnswer { error, .. }) => {
                let code = error.unwrap_or_else(|| "unknown_error".to_owned());
                if TRANSIENT_API_ERRORS.contains(&code.as_str()) {
                    Outcome::Transient {
                        reason: code,
                        retry_after,
                    }
                } else {
                    Outcome::Permanent { reason: code }
                }
            }
            Err(error) => Outcome::Transient {
                reason: format!(
                    "HTTP {} with an unreadable answer: {error}",
                    status.as_u16()
                ),
                retry_after,
            },
        }
    }

    /// The outcome of a request that got no (complete) answer; the URL is left out of the reason.
    fn request_failed(&self, error: reqwest::Error) -> Outcome {
        let reason = if error.is_timeout() {
            format!("timed out after {:?}", self.timeout)
        } else {
            let error = error.without_url();
            let mut reason = if error.is_connect() {
                "connection failed".to_owned()
            } else {
                "request failed".to_owned()
            };
            let mut source: Option<&dyn std::error::Error> = Some(&error);
            while let Some(current) = source {
                reason.push_str(": ");
                reason.push_str(&current.to_string());
                source = current.source();
            }
            reason
        };
        Outcome::Transient {
            reason,
            retry_after: None,
        }
    }

    /// Removes every secret from an outcome's reason (an answer could echo one).
    fn redact(&self, outcome: Outcome) -> Outcome {
        let mut secrets = Vec::new();
        match &self.target {
            Target::Webhook { url } => {
                secrets.push(url.clone());
                // The path is the secret part of a webhook URL.
                let path = reqwest::Url::parse(url).map(|parsed| parsed.path().to_owned());
                secrets.extend(path.ok().filter(|path| path.len() > 1));
            }
            Target::WebApi { token, .. } => secrets.push(token.clone()),
        }
        redact_outcome(outcome, &secrets)
    }
}

fn redact_outcome(outcome: Outcome, secrets: &[String]) -> Outcome {
    let clean = |mut reason: String| {
        for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
            reason = reason.replace(secret.as_str(), "<redacted>");
        }
        reason
    };
    match outcome {
        Outcome::Transient {
            reason,
            retry_after,
        } => Outcome::Transient {
            reason: clean(reason),
            retry_after,
        },
        Outcome::Permanent { reason } => Outcome::Permanent {
            reason: clean(reason),
        },
        accepted => accepted,
    }
}

/// `Retry-After` in seconds, capped at [`MAX_RETRY_AFTER`].
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let seconds: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// The start of a response body, on one line; empty when it cannot be read.
async fn body_text(response: reqwest::Response) -> String {
    let text = response.text().await.unwrap_or_default();
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate(&line, MAX_REASON_BODY)
}

/// The outcome of a non-2xx answer.
fn classify_status(
    status: reqwest::StatusCode,
    body: &str,
    retry_after: Option<Duration>,
) -> Outcome {
    let reason = if body.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {} {body}", status.as_u16())
    };
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Outcome::Transient {
            reason,
            retry_after,
        }
    } else {
        Outcome::Permanent { reason }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    use super::*;
    use crate::model::Status;

    fn alert() -> Alert {
        let created = Utc
            .with_ymd_and_hms(2024, 11, 25, 10, 0, 0)
            .single()
            .expect("valid time");
        Alert {
            id: Uuid::from_u128(0x1234),
            alert_group_id: Uuid::from_u128(0x5678),
            fingerprint: "f".repeat(64),
            source: "vmalert".into(),
            severity: Severity::P1,
            status: Status::Firing,
            title: "Database <primary> down & out".into(),
            description: Some("Connections refused > 5m".into()),
            namespace: Some("payments".into()),
            labels: BTreeMap::from([("app".into(), "db".into()), ("pod".into(), "db-0".into())]),
            annotations: BTreeMap::new(),
            incident_id: None,
            jaeger_trace_id: Some("abc123".into()),
            created_at: created,
            acknowledged_at: None,
            acknowledged_by: None,
            updated_at: created + chrono::Duration::minutes(5),
            resolved_at: None,
            assigned_to: None,
            ends_at: None,
        }
    }

    fn linked_config() -> SlackConfig {
        SlackConfig {
            public_url: Some("https://gomon.example.com/".into()),
            jaeger_url: Some("https://jaeger.example.com".into()),
            grafana_url: Some("https://grafana.example.com/d/alerts".into()),
            ..SlackConfig::default()
        }
    }

    fn blocks_of_type<'a>(message: &'a Message, kind: &str) -> Vec<&'a Value> {
        message
            .blocks
            .as_array()
            .expect("blocks array")
            .iter()
            .filter(|block| block["type"] == kind)
            .collect()
    }

    fn fields(message: &Message) -> Vec<String> {
        blocks_of_type(message, "section")[0]["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|field| field["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn button_urls(message: &Message) -> Vec<(String, String)> {
        blocks_of_type(message, "actions")
            .first()
            .map(|block| {
                block["elements"]
                    .as_array()
                    .expect("elements")
                    .iter()
                    .map(|button| {
                        (
                            button["text"]["text"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                            button["url"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn created_renders_header_fields_description_labels_and_links() {
        let message = render(&alert(), Event::Created, None, None, &linked_config());
        assert_eq!(
            message.text,
            ":rotating_light: [P1] FIRING: Database &lt;primary&gt; down &amp; out"
        );
        let header = blocks_of_type(&message, "header");
        assert_eq!(header.len(), 1);
        assert_eq!(header[0]["text"]["type"], "plain_text");
        assert_eq!(
            header[0]["text"]["text"],
            ":rotating_light: [P1] FIRING: Database <primary> down & out"
        );
        assert_eq!(
            fields(&message),
            [
                "*Severity*\nP1",
                "*Status*\nfiring",
                "*Namespace*\npayments",
                "*Source*\nvmalert",
                "*Time*\n2024-11-25T10:00:00Z",
            ]
        );
        let sections = blocks_of_type(&message, "section");
        assert_eq!(sections[1]["text"]["type"], "mrkdwn");
        assert_eq!(sections[1]["text"]["text"], "Connections refused &gt; 5m");
        let context = blocks_of_type(&message, "context");
        assert_eq!(context[0]["elements"][0]["text"], "app=db, pod=db-0");
        assert_eq!(
            button_urls(&message),
            [
                (
                    "View alert".to_owned(),
                    format!(
                        "https://gomon.example.com/api/v1/alerts/{}",
                        Uuid::from_u128(0x1234)
                    )
                ),
                (
                    "Trace in Jaeger".to_owned(),
                    "https://jaeger.example.com/trace/abc123".to_owned()
                ),
                (
                    "Grafana".to_owned(),
                    "https://grafana.example.com/d/alerts".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn acknowledged_assigned_and_resolved_name_who_and_when() {
        let mut alert = alert();
        alert.status = Status::Acknowledged;
        alert.acknowledged_by = Some("alice".into());
        let config = SlackConfig::default();
        let message = render(&alert, Event::Acknowledged, None, None, &config);
        assert_eq!(
            message.text,
            ":eyes: [P1] ACKNOWLEDGED by alice: Database &lt;primary&gt; down &amp; out"
        );
        let texts = fields(&message);
        assert!(texts.contains(&"*Actor*\nalice".to_owned()), "{texts:?}");
        assert!(
            texts.contains(&"*Time*\n2024-11-25T10:05:00Z".to_owned()),
            "{texts:?}"
        );

        alert.assigned_to = Some("bob".into());
        let message = render(
            &alert,
            Event::Assigned,
            Some("alice"),
            Some("you know <this> one"),
            &config,
        );
        assert!(
            message.text.contains("[P1] ASSIGNED to bob:"),
            "{}",
            message.text
        );
        let texts = fields(&message);
        assert!(
            texts.contains(&"*Assigned to*\nbob".to_owned()),
            "{texts:?}"
        );
        assert!(texts.contains(&"*Actor*\nalice".to_owned()), "{texts:?}");
        assert!(
            texts.contains(&"*Note*\nyou know &lt;this&gt; one".to_owned()),
            "{texts:?}"
        );

        alert.status = Status::Resolved;
        let message = render(&alert, Event::Resolved, None, None, &config);
        assert!(
            message
                .text
                .starts_with(":white_check_mark: [P1] RESOLVED: "),
            "{}",
            message.text
        );
        assert!(fields(&message).contains(&"*Status*\nresolved".to_owned()));
        let message = render(&alert, Event::Resolved, Some("carol"), None, &config);
        assert!(
            message.text.contains("RESOLVED by carol"),
            "{}",
            message.text
        );
    }

    #[test]
    fn optional_parts_are_omitted() {
        let mut alert = alert();
        alert.namespace = None;
        alert.description = Some("   ".into());
        alert.labels.clear();
        let message = render(&alert, Event::Created, None, None, &SlackConfig::default());
        assert!(blocks_of_type(&message, "actions").is_empty());
        assert!(blocks_of_type(&message, "context").is_empty());
        assert_eq!(blocks_of_type(&message, "section").len(), 1);
        assert!(
            !fields(&message)
                .iter()
                .any(|field| field.contains("Namespace"))
        );

        // Jaeger needs both the base URL and a trace id.
        alert.jaeger_trace_id = None;
        let config = linked_config();
        let names: Vec<String> = button_urls(&render(&alert, Event::Created, None, None, &config))
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["View alert", "Grafana"]);
        let config = SlackConfig {
            jaeger_url: Some("https://jaeger.example.com".into()),
            ..SlackConfig::default()
        };
        assert!(button_urls(&render(&alert, Event::Created, None, None, &config)).is_empty());
    }

    #[test]
    fn trace_ids_are_encoded_in_the_link() {
        let mut alert = alert();
        alert.jaeger_trace_id = Some("a b/c?d".into());
        let config = SlackConfig {
            jaeger_url: Some("https://jaeger.example.com/".into()),
            ..SlackConfig::default()
        };
        let urls = button_urls(&render(&alert, Event::Created, None, None, &config));
        assert_eq!(urls[0].1, "https://jaeger.example.com/trace/a%20b%2Fc%3Fd");
    }

    #[test]
    fn long_texts_are_cut_to_slack_limits() {
        let mut alert = alert();
        alert.title = "t".repeat(255);
        alert.description = Some("&".repeat(MAX_TEXT));
        let message = render(
            &alert,
            Event::Created,
            None,
            Some(&"n".repeat(5000)),
            &SlackConfig::default(),
        );
        let header = blocks_of_type(&message, "header")[0]["text"]["text"]
            .as_str()
            .expect("header text")
            .to_owned();
        assert_eq!(header.chars().count(), MAX_HEADER);
        assert!(header.ends_with('…'));
        let description = blocks_of_type(&message, "section")[1]["text"]["text"]
            .as_str()
            .expect("description")
            .to_owned();
        assert!(description.chars().count() <= MAX_TEXT);
        assert!(
            description.ends_with("&amp;…"),
            "never cut inside an escape"
        );
        let note = fields(&message)
            .into_iter()
            .find(|field| field.starts_with("*Note*"))
            .expect("note field");
        assert_eq!(note.chars().count(), MAX_FIELD);
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("a & b < c > d"), "a &amp; b &lt; c &gt; d");
        assert_eq!(escape("<!channel>"), "&lt;!channel&gt;");
        assert_eq!(escape_truncated("<<<", 9), "&lt;&lt;…");
        assert_eq!(escape_truncated("<<<", 8), "&lt;…");
        assert_eq!(escape_truncated("ok", 2), "ok");
    }

    #[test]
    fn routes_pick_the_first_channel_listing_the_severity() {
        let mut config = SlackConfig::default();
        assert_eq!(config.channel_for(Severity::P1), Some("#alerts-critical"));
        assert_eq!(config.channel_for(Severity::P2), Some("#alerts-critical"));
        assert_eq!(config.channel_for(Severity::P4), Some("#alerts"));
        config.routes = vec![
            Route {
                severities: vec![Severity::P1],
                channel: "#pager".into(),
            },
            Route {
                severities: vec![Severity::P1, Severity::P2],
                channel: "#other".into(),
            },
        ];
        assert_eq!(config.channel_for(Severity::P1), Some("#pager"));
        assert_eq!(config.channel_for(Severity::P2), Some("#other"));
        assert_eq!(config.channel_for(Severity::P3), None);
    }

    #[test]
    fn configuration_parses_with_defaults_and_refuses_unknown_keys() {
        let config: SlackConfig = serde_yaml::from_str(
            "bot_token: xoxb-1\ntimeout: 3s\nroutes:\n  - severities: [P1]\n    channel: '#pager'\ncircuit_breaker:\n  failure_threshold: 2\n",
        )
        .expect("parse");
        assert_eq!(config.timeout, Duration::from_secs(3));
        assert_eq!(config.api_url, "https://slack.com/api");
        assert_eq!(config.circuit_breaker.failure_threshold, 2);
        assert_eq!(config.channel_for(Severity::P1), Some("#pager"));
        assert!(config.check().is_ok());
        assert!(serde_yaml::from_str::<SlackConfig>("webhook: x").is_err());
        assert!(serde_yaml::from_str::<SlackConfig>("routes: [{channel: '#a'}]").is_err());
    }

    #[test]
    fn check_names_the_key_and_never_the_secret() {
        assert!(SlackConfig::default().check().is_ok());
        let expect_error = |config: SlackConfig, key: &str| {
            let error = config.check().expect_err(key).to_string();
            assert!(error.contains(key), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
        };
        expect_error(
            SlackConfig {
                webhook_url: Some("https://hooks.slack.com/services/hunter2".into()),
                webhook_url_file: Some(PathBuf::from("/nonexistent")),
                ..SlackConfig::default()
            },
            "alerting.slack.webhook_url",
        );
        expect_error(
            SlackConfig {
                webhook_url: Some("hunter2".into()),
                ..SlackConfig::default()
            },
            "alerting.slack.webhook_url",
        );
        expect_error(
            SlackConfig {
                webhook_url_file: Some(PathBuf::from("/nonexistent/webhook")),
                ..SlackConfig::default()
            },
            "alerting.slack.webhook_url_file",
        );
        expect_error(
            SlackConfig {
                bot_token_file: Some(PathBuf::from("/nonexistent/token")),
                ..SlackConfig::default()
            },
            "alerting.slack.bot_token_file",
        );
        expect_error(
            SlackConfig {
                bot_token: Some("hunter2".into()),
                bot_token_file: Some(PathBuf::from("/nonexistent/token")),
                ..SlackConfig::default()
            },
            "alerting.slack.bot_token",
        );
        expect_error(
            SlackConfig {
                timeout: Duration::ZERO,
                ..SlackConfig::default()
            },
            "alerting.slack.timeout",
        );
        expect_error(
            SlackConfig {
                routes: vec![Route {
                    severities: vec![Severity::P1],
                    channel: " ".into(),
                }],
                ..SlackConfig::default()
            },
            "alerting.slack.routes[0].channel",
        );
        expect_error(
            SlackConfig {
                public_url: Some("gomon.example.com".into()),
                ..SlackConfig::default()
            },
            "alerting.slack.public_url",
        );
        let mut config = SlackConfig::default();
        config.circuit_breaker.half_open_max_requests = 0;
        expect_error(
            config,
            "alerting.slack.circuit_breaker.half_open_max_requests",
        );
    }

    #[test]
    fn secrets_are_read_from_files_trimmed() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("token");
        std::fs::write(&path, "xoxb-hunter2\n").expect("write token");
        let config = SlackConfig {
            bot_token_file: Some(path.clone()),
            ..SlackConfig::default()
        };
        assert!(config.check().is_ok());
        assert_eq!(
            config.bot_token().ok().flatten().as_deref(),
            Some("xoxb-hunter2")
        );
        std::fs::write(&path, "  \n").expect("write empty token");
        let error = config.check().expect_err("empty file").to_string();
        assert!(error.contains("alerting.slack.bot_token_file"), "{error}");
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let config = SlackConfig {
            webhook_url: Some("https://hooks.slack.com/services/T/B/hunter2".into()),
            bot_token: Some("xoxb-hunter2".into()),
            ..SlackConfig::default()
        };
        let client = SlackClient::new(&config)
            .expect("client")
            .expect("configured");
        assert!(client.uses_web_api());
        let debug = format!("{config:?}{client:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        let webhook = SlackConfig {
            bot_token: None,
            ..config
        };
        let client = SlackClient::new(&webhook)
            .expect("client")
            .expect("configured");
        assert!(!client.uses_web_api());
        assert!(!format!("{client:?}").contains("hunter2"));
        assert!(
            SlackClient::new(&SlackConfig::default())
                .expect("client")
                .is_none()
        );
    }

    #[test]
    fn only_transient_outcomes_count_against_slack() {
        let transient = Outcome::Transient {
            reason: "HTTP 500".into(),
            retry_after: None,
        };
        assert!(transient.counts_against_slack());
        assert!(!Outcome::Permanent { reason: "x".into() }.counts_against_slack());
        let accepted = Outcome::Accepted {
            ts: None,
            channel: None,
        };
        assert!(!accepted.counts_against_slack());
        assert_eq!(Event::Acknowledged.as_str(), "acknowledged");
        assert_eq!(
            serde_json::to_string(&Event::Created).expect("serialise"),
            "\"created\""
        );
    }
}
