//! The Slack HTTP client: posts a message through an incoming webhook or the Web API's `chat.postMessage`, edits
//! one with `chat.update`, and classifies Slack's answer (accepted, try again later, or give up: [`SendOutcome`]), with every secret removed
//! from the reason.

use std::time::Duration;

use gomon_runtime::config::{KeyError, Secret};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Message, SlackConfig};
use crate::notify::outcome::{
    MAX_ANSWER_BYTES, SendOutcome, body_text, classify_status, post, read_limited, redact,
    request_failed, retry_after,
};

/// Web API error codes that mean "Slack's fault, try again".
const TRANSIENT_API_ERRORS: [&str; 5] = [
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// Where messages go: an incoming webhook, or the Web API with a bot token.
#[derive(Debug)]
enum Target {
    Webhook { url: Secret },
    WebApi { api_url: String, token: Secret },
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
            Target::WebApi {
                api_url: config.api_url.trim_end_matches('/').to_owned(),
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
            Target::WebApi { api_url, token } => {
                let mut body =
                    json!({"channel": channel, "text": message.text, "blocks": message.blocks});
                if let (Some(thread_ts), Some(object)) = (thread_ts, body.as_object_mut()) {
                    object.insert("thread_ts".to_owned(), Value::from(thread_ts));
                }
                let endpoint = format!("{api_url}/chat.postMessage");
                self.call_api(&endpoint, token.expose(), &body).await
            }
        };
        self.redact(outcome)
    }

    /// Replaces the message `ts` in `channel` (a channel id) with `message` (Web API `chat.update`). Through an
    /// incoming webhook, which cannot edit, it is refused as permanent.
    pub async fn update(&self, message: &Message, channel: &str, ts: &str) -> SendOutcome {
        let outcome = match &self.target {
            Target::Webhook { .. } => SendOutcome::Permanent {
                reason: "an incoming webhook cannot edit a message".to_owned(),
            },
            Target::WebApi { api_url, token } => {
                let body = json!({"channel": channel, "ts": ts, "text": message.text, "blocks": message.blocks});
                let endpoint = format!("{api_url}/chat.update");
                self.call_api(&endpoint, token.expose(), &body).await
            }
        };
        self.redact(outcome)
    }

    async fn send_webhook(&self, url: &str, message: &Message) -> SendOutcome {
        let body = json!({"text": message.text, "blocks": message.blocks});
        post(self.http.post(url).json(&body), self.timeout).await
    }

    /// Posts `body` to the Web API method at `endpoint` and classifies the answer.
    async fn call_api(&self, endpoint: &str, token: &str, body: &Value) -> SendOutcome {
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
            Err(error) => return request_failed(error, self.timeout),
        };
        let status = response.status();
        let retry_after = retry_after(&response);
        if !status.is_success() {
            let body = body_text(response).await;
            return classify_status(status, &body, retry_after);
        }
        let bytes = match read_limited(response, MAX_ANSWER_BYTES).await {
            Ok(bytes) => bytes,
            Err(error) => return request_failed(error, self.timeout),
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
        redact(outcome, &secrets)
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
}
