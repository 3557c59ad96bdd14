//! `alerting.slack`: where notifications go (webhook or bot token, routes per severity), the links their messages
//! carry, and the checks made at start-up. Secrets never appear in `Debug` output or error messages.

use std::path::PathBuf;
use std::time::Duration;

use gomon_runtime::config::{KeyError, Secret};
use gomon_runtime::http_client::is_http_url;
use serde::{Deserialize, Serialize};

use crate::model::Severity;
use crate::notify::breaker::BreakerConfig;

/// Slack notifications (`alerting.slack`). Nothing is sent unless a webhook URL or a bot token is configured.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlackConfig {
    /// Incoming webhook URL (a secret). Its channel is fixed by Slack, so `routes` only decide what is sent.
    pub webhook_url: Option<Secret>,
    /// File holding the webhook URL (a mounted Kubernetes Secret).
    pub webhook_url_file: Option<PathBuf>,
    /// Bot token for the Web API (`chat.postMessage`); preferred over the webhook when both are set.
    pub bot_token: Option<Secret>,
    /// File holding the bot token.
    pub bot_token_file: Option<PathBuf>,
    /// Base URL of the Web API.
    pub api_url: String,
    /// With a bot token: when an alert is acknowledged, assigned or resolved, its first message is edited
    /// (`chat.update`) to show its state, besides the reply in its thread.
    pub update_in_place: bool,
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
            update_in_place: true,
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

impl SlackConfig {
    /// The channel alerts of `severity` go to; `None` when this severity is not notified.
    pub fn channel_for(&self, severity: Severity) -> Option<&str> {
        self.routes
            .iter()
            .find(|route| route.severities.contains(&severity))
            .map(|route| route.channel.as_str())
    }

    /// Whether a destination is set: a webhook URL or a bot token, inline or in a file.
    pub fn has_destination(&self) -> bool {
        self.webhook_url.is_some()
            || self.webhook_url_file.is_some()
            || self.bot_token.is_some()
            || self.bot_token_file.is_some()
    }

    /// Checks what types alone cannot: secrets readable and set once, URLs valid, routes complete, durations in
    /// range. The error names the key within this section and never contains a secret.
    pub fn check(&self) -> Result<(), KeyError> {
        if self.webhook_url()?.is_some_and(|url| !is_http_url(&url)) {
            return Err(KeyError::new("webhook_url", "not an http(s) URL"));
        }
        self.bot_token()?;
        if !is_http_url(&self.api_url) {
            return Err(KeyError::new(
                "api_url",
                format!("{:?} is not an http(s) URL", self.api_url),
            ));
        }
        let links = [
            ("public_url", &self.public_url),
            ("grafana_url", &self.grafana_url),
            ("jaeger_url", &self.jaeger_url),
        ];
        for (key, value) in links {
            if let Some(value) = value.as_deref().filter(|value| !is_http_url(value)) {
                return Err(KeyError::new(
                    key,
                    format!("{value:?} is not an http(s) URL"),
                ));
            }
        }
        if self.timeout < Duration::from_millis(1) {
            return Err(KeyError::new(
                "timeout",
                format!("must be at least 1ms, not {:?}", self.timeout),
            ));
        }
        for (index, route) in self.routes.iter().enumerate() {
            if route.channel.trim().is_empty() {
                return Err(KeyError::new(
                    format!("routes[{index}].channel"),
                    "must not be empty",
                ));
            }
            if route.severities.is_empty() {
                return Err(KeyError::new(
                    format!("routes[{index}].severities"),
                    "must list at least one",
                ));
            }
        }
        self.circuit_breaker
            .check()
            .map_err(|error| error.within("circuit_breaker"))
    }

    /// The webhook URL from `webhook_url` or `webhook_url_file`, trimmed; the error names the key within this
    /// section.
    pub(super) fn webhook_url(&self) -> Result<Option<String>, KeyError> {
        load_secret("webhook_url", &self.webhook_url, &self.webhook_url_file)
    }

    /// The bot token from `bot_token` or `bot_token_file`, trimmed; the error names the key within this section.
    pub(super) fn bot_token(&self) -> Result<Option<String>, KeyError> {
        load_secret("bot_token", &self.bot_token, &self.bot_token_file)
    }
}

/// The secret `key`, inline or from `{key}_file` (see [`gomon_runtime::config::secret`]).
fn load_secret(
    key: &str,
    inline: &Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<Option<String>, KeyError> {
    gomon_runtime::config::secret(key, inline.as_ref().map(Secret::expose), file.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let config: SlackConfig = yaml_serde::from_str(
            "bot_token: xoxb-1\ntimeout: 3s\nroutes:\n  - severities: [P1]\n    channel: '#pager'\ncircuit_breaker:\n  failure_threshold: 2\n",
        )
        .expect("parse");
        assert_eq!(config.timeout, Duration::from_secs(3));
        assert_eq!(config.api_url, "https://slack.com/api");
        assert_eq!(config.circuit_breaker.failure_threshold, 2);
        assert_eq!(config.channel_for(Severity::P1), Some("#pager"));
        assert!(config.check().is_ok());
        assert!(yaml_serde::from_str::<SlackConfig>("webhook: x").is_err());
        assert!(yaml_serde::from_str::<SlackConfig>("routes: [{channel: '#a'}]").is_err());
    }

    #[test]
    fn check_names_the_key_and_never_the_secret() {
        assert!(SlackConfig::default().check().is_ok());
        let expect_error = |config: SlackConfig, key: &str| {
            let error = config
                .check()
                .expect_err(key)
                .within("alerting.slack")
                .to_string();
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
        let error = config
            .check()
            .expect_err("empty file")
            .within("alerting.slack")
            .to_string();
        assert!(error.contains("alerting.slack.bot_token_file"), "{error}");
    }
}
