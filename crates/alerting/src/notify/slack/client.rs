//! The Slack HTTP client: posts a message through an incoming webhook or the Web API's `chat.postMessage`, and
//! classifies Slack's answer (accepted, try again later, or give up), with every secret removed from the reason.

use std::time::Duration;

use gomon_runtime::config::{KeyError, Secret};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Message, SlackConfig};
use crate::model::truncate;

/// Longest `Retry-After` honoured; longer values are capped to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What became of one attempt to send a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
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

impl SendOutcome {
    /// Whether this outcome says Slack is failing (feeds the circuit breaker): true only for
    /// [`SendOutcome::Transient`].
    pub fn counts_against_slack(&self) -> bool {
        matches!(self, SendOutcome::Transient { .. })
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

/// Where messages go: an incoming webhook, or the Web API with a bot token.
#[derive(Debug)]
enum Target {
    Webhook { url: Secret },
    WebApi { endpoint: String, token: Secret },
}

/// Sends messages to Slack through the Web API (bot token) or an incoming webhook.
#[derive(Debug)]
pub struct SlackClient {
    http: reqwest::Client,
    target: Target,
    timeout: Duration,
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
        let within = |error: KeyError| error.within("alerting.slack");
        let target = if let Some(token) = config.bot_token().map_err(within)? {
            let endpoint = format!("{}/chat.postMessage", config.api_url.trim_end_matches('/'));
            Target::WebApi {
                endpoint,
                token: token.into(),
            }
        } else if let Some(url) = config.webhook_url().map_err(within)? {
            Target::Webhook { url: url.into() }
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
    pub async fn send(
        &self,
        message: &Message,
        channel: &str,
        thread_ts: Option<&str>,
    ) -> SendOutcome {
        let outcome = match &self.target {
            Target::Webhook { url } => self.send_webhook(url.expose(), message).await,
            Target::WebApi { endpoint, token } => {
                self.send_api(endpoint, token.expose(), message, channel, thread_ts)
                    .await
            }
        };
        self.redact(outcome)
    }

    async fn send_webhook(&self, url: &str, message: &Message) -> SendOutcome {
        let body = json!({"text": message.text, "blocks": message.blocks});
        let response = match self.http.post(url).json(&body).send().await {
            Ok(response) => response,
            Err(error) => return self.request_failed(error),
        };
        let status = response.status();
        if status.is_success() {
            return SendOutcome::Accepted {
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
    ) -> SendOutcome {
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
            }) => SendOutcome::Accepted { ts, channel },
            Ok(ApiAnswer { error, .. }) => {
                let code = error.unwrap_or_else(|| "unknown_error".to_owned());
                if TRANSIENT_API_ERRORS.contains(&code.as_str()) {
                    SendOutcome::Transient {
                        reason: code,
                        retry_after,
                    }
                } else {
                    SendOutcome::Permanent { reason: code }
                }
            }
            Err(error) => SendOutcome::Transient {
                reason: format!(
                    "HTTP {} with an unreadable answer: {error}",
                    status.as_u16()
                ),
                retry_after,
            },
        }
    }

    /// The outcome of a request that got no (complete) answer; the URL is left out of the reason.
    fn request_failed(&self, error: reqwest::Error) -> SendOutcome {
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
        SendOutcome::Transient {
            reason,
            retry_after: None,
        }
    }

    /// Removes every secret from an outcome's reason (an answer could echo one).
    fn redact(&self, outcome: SendOutcome) -> SendOutcome {
        let mut secrets = Vec::new();
        match &self.target {
            Target::Webhook { url } => {
                secrets.push(url.expose().to_owned());
                // The path is the secret part of a webhook URL.
                let path = reqwest::Url::parse(url.expose()).map(|parsed| parsed.path().to_owned());
                secrets.extend(path.ok().filter(|path| path.len() > 1));
            }
            Target::WebApi { token, .. } => secrets.push(token.expose().to_owned()),
        }
        redact_outcome(outcome, &secrets)
    }
}

fn redact_outcome(outcome: SendOutcome, secrets: &[String]) -> SendOutcome {
    let clean = |mut reason: String| {
        for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
            reason = reason.replace(secret.as_str(), "<redacted>");
        }
        reason
    };
    match outcome {
        SendOutcome::Transient {
            reason,
            retry_after,
        } => SendOutcome::Transient {
            reason: clean(reason),
            retry_after,
        },
        SendOutcome::Permanent { reason } => SendOutcome::Permanent {
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
) -> SendOutcome {
    let reason = if body.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {} {body}", status.as_u16())
    };
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        SendOutcome::Transient {
            reason,
            retry_after,
        }
    } else {
        SendOutcome::Permanent { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let transient = SendOutcome::Transient {
            reason: "HTTP 500".into(),
            retry_after: None,
        };
        assert!(transient.counts_against_slack());
        assert!(!SendOutcome::Permanent { reason: "x".into() }.counts_against_slack());
        let accepted = SendOutcome::Accepted {
            ts: None,
            channel: None,
        };
        assert!(!accepted.counts_against_slack());
    }
}
