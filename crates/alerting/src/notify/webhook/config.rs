//! A webhook receiver's settings (`alerting.notify.receivers[]` with `type: webhook`): where Alertmanager's
//! webhook payload is posted, how the request authenticates, TLS, time limit and size, and the checks made at
//! start-up. Secrets never appear in `Debug` output or error messages.

use std::path::PathBuf;
use std::time::Duration;

use gomon_runtime::config::{KeyError, Secret};
use gomon_runtime::http_client::{BasicAuth, Credentials, HttpTlsConfig, is_http_url};
use serde::{Deserialize, Serialize};

use crate::notify::breaker::BreakerConfig;

/// Most alerts one payload may carry, whatever `max_alerts` says.
pub const MAX_ALERTS_LIMIT: u32 = 1000;

/// A webhook receiver's settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where the payload is posted (a secret: URLs often carry a token); or `url_file`.
    pub url: Option<Secret>,
    /// File holding the URL.
    pub url_file: Option<PathBuf>,
    /// Bearer token sent as `Authorization: Bearer ...`; or `bearer_token_file`. Not with `basic_auth`.
    pub bearer_token: Option<Secret>,
    /// File holding the bearer token.
    pub bearer_token_file: Option<PathBuf>,
    /// HTTP basic authentication.
    pub basic_auth: Option<BasicAuth>,
    /// TLS to the receiver: a CA to trust, a client certificate, `insecure_skip_verify` (false by default).
    pub tls: HttpTlsConfig,
    /// Longest time one request may take, from connecting to reading the answer.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most alerts in one payload; 0: no limit but [`MAX_ALERTS_LIMIT`]. Alerts beyond it are counted in
    /// `truncatedAlerts`.
    pub max_alerts: u32,
    /// Base URL under which people reach this GoMon (`https://gomon.example.com`): the payload's `externalURL`,
    /// and each alert's `generatorURL` (`{external_url}/api/v1/alerts/{id}`). Unset: both empty.
    pub external_url: Option<String>,
    /// When to stop sending while the receiver is failing.
    pub circuit_breaker: BreakerConfig,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: None,
            url_file: None,
            bearer_token: None,
            bearer_token_file: None,
            basic_auth: None,
            tls: HttpTlsConfig::default(),
            timeout: Duration::from_secs(10),
            max_alerts: 0,
            external_url: None,
            circuit_breaker: BreakerConfig::default(),
        }
    }
}

impl WebhookConfig {
    /// Checks what types cannot: a URL (inline or from its file) that is `http` or `https` with a host, readable
    /// secrets and TLS files, a timeout of at least 1 ms, `max_alerts` within [`MAX_ALERTS_LIMIT`]. The error names
    /// the key within this receiver and never a secret.
    pub fn check(&self) -> Result<(), KeyError> {
        self.url()?;
        self.credentials()?;
        self.tls.read("tls").map(|_| ())?;
        if self.max_alerts > MAX_ALERTS_LIMIT {
            return Err(KeyError::new(
                "max_alerts",
                format!("at most {MAX_ALERTS_LIMIT}, not {}", self.max_alerts),
            ));
        }
        crate::notify::check_common(
            self.timeout,
            self.external_url.as_deref(),
            &self.circuit_breaker,
        )
    }

    /// The URL from `url` or `url_file`, trimmed and checked; the error names the key and not the value.
    pub fn url(&self) -> Result<reqwest::Url, KeyError> {
        let url = gomon_runtime::config::secret(
            "url",
            self.url.as_ref().map(Secret::expose),
            self.url_file.as_deref(),
        )?
        .ok_or_else(|| KeyError::new("url", "a webhook receiver needs url or url_file"))?;
        let key = if self.url.is_some() {
            "url"
        } else {
            "url_file"
        };
        if !is_http_url(&url) {
            return Err(KeyError::new(key, "not an http(s) URL with a host"));
        }
        reqwest::Url::parse(&url).map_err(|_| KeyError::new(key, "not an http(s) URL with a host"))
    }

    /// The credentials sent with every request, read from their files.
    pub fn credentials(&self) -> Result<Option<Credentials>, KeyError> {
        Credentials::read(
            "",
            self.basic_auth.as_ref(),
            self.bearer_token.as_ref(),
            self.bearer_token_file.as_deref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> WebhookConfig {
        WebhookConfig {
            url: Some(url.into()),
            ..WebhookConfig::default()
        }
    }

    #[test]
    fn check_names_the_key_and_never_the_secret() {
        assert!(with_url("https://hooks.example.com/x").check().is_ok());
        for url in [
            "ftp://example.com/hunter2",
            "hunter2",
            "file:///hunter2",
            "https://",
        ] {
            let error = with_url(url).check().expect_err(url);
            assert_eq!(error.key, "url");
            assert!(!error.to_string().contains("hunter2"), "{error}");
        }
        let error = WebhookConfig::default().check().expect_err("no url");
        assert_eq!(error.key, "url");
        let error = WebhookConfig {
            url_file: Some("/nonexistent/url".into()),
            ..WebhookConfig::default()
        }
        .check()
        .expect_err("missing file");
        assert_eq!(error.key, "url_file");
        let error = WebhookConfig {
            bearer_token: Some("hunter2".into()),
            basic_auth: Some(BasicAuth {
                username: "u".into(),
                password: Some("p".into()),
                password_file: None,
            }),
            ..with_url("https://hooks.example.com/x")
        }
        .check()
        .expect_err("both credentials");
        assert_eq!(error.key, "basic_auth");
        let error = WebhookConfig {
            timeout: Duration::ZERO,
            ..with_url("https://hooks.example.com/x")
        }
        .check()
        .expect_err("zero timeout");
        assert_eq!(error.key, "timeout");
        let error = WebhookConfig {
            max_alerts: MAX_ALERTS_LIMIT + 1,
            ..with_url("https://hooks.example.com/x")
        }
        .check()
        .expect_err("too many");
        assert_eq!(error.key, "max_alerts");
        let error = WebhookConfig {
            tls: HttpTlsConfig {
                ca_file: Some("/nonexistent/ca.pem".into()),
                ..HttpTlsConfig::default()
            },
            ..with_url("https://hooks.example.com/x")
        }
        .check()
        .expect_err("missing CA");
        assert_eq!(error.key, "tls.ca_file");
        let debug = format!("{:?}", with_url("https://hooks.example.com/hunter2"));
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
