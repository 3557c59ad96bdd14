//! The webhook HTTP client: posts a [`WebhookMessage`] as JSON, with the receiver's credentials, over TLS as
//! configured, redirects not followed, within `timeout`; and classifies the answer like every receiver's
//! ([`crate::notify::outcome`]): 2xx accepted, 5xx, 429, 408 and network errors transient, any other status
//! permanent. Only the start of an error answer is read; a success's body is not read at all.

use std::time::Duration;

use gomon_runtime::config::KeyError;
use gomon_runtime::http_client::Credentials;

use super::WebhookConfig;
use super::payload::WebhookMessage;
use crate::notify::outcome::{SendOutcome, post, redact};

/// Posts Alertmanager webhook payloads to one URL.
pub struct WebhookClient {
    http: reqwest::Client,
    url: reqwest::Url,
    credentials: Option<Credentials>,
    timeout: Duration,
    max_alerts: u32,
    external_url: String,
    /// What must never appear in a reason: the URL (it may carry a token), its path and query, the credentials.
    secrets: Vec<String>,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("WebhookClient")
            .field("url", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("max_alerts", &self.max_alerts)
            .finish_non_exhaustive()
    }
}

impl WebhookClient {
    /// The client `config` describes, its files (URL, secrets, TLS) read; the error names the key within the
    /// receiver.
    pub fn new(config: &WebhookConfig) -> Result<WebhookClient, KeyError> {
        config.check()?;
        let url = config.url()?;
        let credentials = config.credentials()?;
        let http = crate::notify::http_client(&config.tls, config.timeout)?;
        let mut secrets = vec![url.to_string()];
        let path_and_query = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        if path_and_query.len() > 1 {
            secrets.push(path_and_query);
        }
        if let Some(credentials) = &credentials {
            secrets.extend(credentials.secrets().into_iter().map(str::to_owned));
        }
        Ok(WebhookClient {
            http,
            url,
            credentials,
            timeout: config.timeout,
            max_alerts: config.max_alerts,
            external_url: config.external_url.clone().unwrap_or_default(),
            secrets,
        })
    }

    /// Most alerts in one payload (0: no limit).
    pub fn max_alerts(&self) -> u32 {
        self.max_alerts
    }

    /// This GoMon's base URL for the payload's `externalURL` and `generatorURL`; empty when not configured.
    pub fn external_url(&self) -> &str {
        &self.external_url
    }

    /// Posts `message` and says what came of it; no reason ever holds a secret.
    pub async fn send(&self, message: &WebhookMessage) -> SendOutcome {
        let mut request = self.http.post(self.url.clone()).json(message);
        if let Some(credentials) = &self.credentials {
            request = credentials.apply(request);
        }
        redact(post(request, self.timeout).await, &self.secrets)
    }
}
