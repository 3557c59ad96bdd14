//! Configuration of `gomon alerting` (the `alerting:` section of the configuration file).

use std::net::SocketAddr;
use std::time::Duration;

use gomon_runtime::config::KeyError;
use serde::{Deserialize, Serialize};

use crate::api::AuthConfig;
use crate::console::ConsoleConfig;
use crate::notify::dispatcher::OutboxConfig;
use crate::notify::policy::{NotifyConfig, Policy};
use crate::notify::slack::SlackConfig;
use crate::pods::KubernetesConfig;
use crate::rule_engines::AlertmanagerConfig;
use crate::store::DatabaseConfig;

/// The alerting service's configuration. Every field has a default, so an empty section is valid.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API listens on. Default: `0.0.0.0:8080` when API tokens are configured, otherwise
    /// `127.0.0.1:8080`, so that an unauthenticated API is never exposed by accident.
    pub listen: Option<SocketAddr>,
    /// The listener's limits: header-read timeout and concurrent connections.
    pub http: gomon_runtime::http::ListenerConfig,
    /// Longest time one HTTP request may take before it is answered with 408.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// On SIGTERM: how long to finish the requests and the Slack delivery under way; what is not done by then is
    /// abandoned (an undelivered notification stays in the outbox and is delivered after the restart).
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Where alerts are stored.
    pub database: DatabaseConfig,
    /// Who may call the API.
    pub auth: AuthConfig,
    /// Where notifications go: Slack by incoming webhook or Web API, routed by severity, behind a circuit breaker.
    pub slack: SlackConfig,
    /// Named receivers and the routes to them; when unset, `slack` is the one receiver.
    pub notify: Option<NotifyConfig>,
    /// How the notification outbox is delivered and retried.
    pub outbox: OutboxConfig,
    /// The Kubernetes pod watcher (off by default).
    pub kubernetes: KubernetesConfig,
    /// How alerts of the Alertmanager API (Prometheus, vmalert) are mapped and expired.
    pub alertmanager: AlertmanagerConfig,
    /// The web console at `/`.
    pub console: ConsoleConfig,
    /// Sources of the REST API counted under their own name in `alerting_alerts_created_total`, besides GoMon's
    /// own (`api`, `kubernetes`, `prometheus`, `vmalert`, `alertmanager`, `grafana`); others count as `other`.
    pub sources: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: None,
            http: gomon_runtime::http::ListenerConfig::default(),
            request_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(10),
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            slack: SlackConfig::default(),
            notify: None,
            outbox: OutboxConfig::default(),
            kubernetes: KubernetesConfig::default(),
            alertmanager: AlertmanagerConfig::default(),
            console: ConsoleConfig::default(),
            sources: Vec::new(),
        }
    }
}

/// Port the API listens on when `listen` is not set.
pub const DEFAULT_PORT: u16 = 8080;

impl Config {
    /// Checks what types alone cannot: values in range, and that the files named can be read. The error names the
    /// key in full (`alerting.database.url_file`).
    pub fn check(&self) -> Result<(), KeyError> {
        let tokens = self
            .auth
            .load_tokens()
            .map_err(|error| error.within("alerting.auth"))?;
        let address = self.listen_addr(!tokens.is_empty());
        if tokens.is_empty() && !address.ip().is_loopback() && !self.auth.anonymous {
            return Err(KeyError::new(
                "alerting.auth",
                format!(
                    "no API token configured, and alerting.listen ({address}) is not a loopback address: anyone \
                     who can reach it could change and delete alerts. Configure alerting.auth.tokens or \
                     tokens_file, or set alerting.auth.anonymous: true to serve it open on purpose"
                ),
            ));
        }
        self.http
            .check()
            .map_err(|error| error.within("alerting.http"))?;
        self.database
            .check()
            .map_err(|error| error.within("alerting.database"))?;
        self.slack
            .check()
            .map_err(|error| error.within("alerting.slack"))?;
        self.outbox
            .check()
            .map_err(|error| error.within("alerting.outbox"))?;
        self.kubernetes
            .check()
            .map_err(|error| error.within("alerting.kubernetes"))?;
        self.alertmanager
            .check()
            .map_err(|error| error.within("alerting.alertmanager"))?;
        self.console
            .check()
            .map_err(|error| error.within("alerting.console"))?;
        // The lease must outlast one request to any receiver (alerting.slack's even when it sends nothing).
        let policy = self.policy()?;
        let mut timeouts = vec![("alerting.slack.timeout".to_owned(), self.slack.timeout)];
        if self.notify.is_some() {
            timeouts = policy
                .receivers()
                .iter()
                .enumerate()
                .map(|(index, receiver)| {
                    (
                        format!("alerting.notify.receivers[{index}].timeout"),
                        receiver.kind.timeout(),
                    )
                })
                .collect();
        }
        for (key, timeout) in timeouts {
            if self.outbox.lease <= timeout {
                return Err(KeyError::new(
                    "alerting.outbox.lease",
                    format!(
                        "must be longer than {key} ({timeout:?}), not {:?}",
                        self.outbox.lease
                    ),
                ));
            }
        }
        // A group's rows are claimed together when its first is due: the others, due within the wait, must not be
        // mistaken for rows another replica holds (due a lease after their claim).
        for (key, wait) in policy.group_waits() {
            if wait.saturating_mul(2) >= self.outbox.lease {
                return Err(KeyError::new(
                    "alerting.outbox.lease",
                    format!(
                        "must be longer than twice {key} ({wait:?}), not {:?}",
                        self.outbox.lease
                    ),
                ));
            }
        }
        for (key, value) in [
            ("alerting.request_timeout", self.request_timeout),
            ("alerting.shutdown_timeout", self.shutdown_timeout),
        ] {
            if value < Duration::from_millis(1) {
                return Err(KeyError::new(
                    key,
                    format!("must be at least 1ms, not {value:?}"),
                ));
            }
        }
        if self.sources.len() > 100 {
            return Err(KeyError::new(
                "alerting.sources",
                format!("at most 100 sources, not {}", self.sources.len()),
            ));
        }
        if let Some(source) = self.sources.iter().find(|source| {
            source.trim().is_empty() || source.chars().count() > crate::model::MAX_SOURCE
        }) {
            return Err(KeyError::new(
                "alerting.sources",
                format!(
                    "{source:?} is not 1 to {} characters",
                    crate::model::MAX_SOURCE
                ),
            ));
        }
        Ok(())
    }

    /// The notification policy: `alerting.notify`, or what `alerting.slack` stands for when it is not set.
    pub fn policy(&self) -> Result<Policy, KeyError> {
        Policy::new(self.notify.as_ref(), &self.slack)
    }

    /// The address to listen on, following the rule documented on [`Config::listen`].
    pub fn listen_addr(&self, authenticated: bool) -> SocketAddr {
        self.listen.unwrap_or_else(|| {
            let ip = if authenticated {
                [0, 0, 0, 0]
            } else {
                [127, 0, 0, 1]
            };
            SocketAddr::from((ip, DEFAULT_PORT))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::api::{Access, ApiToken};

    #[test]
    fn unauthenticated_api_binds_loopback_by_default() {
        let config = Config::default();
        assert_eq!(config.listen_addr(false).to_string(), "127.0.0.1:8080");
        assert_eq!(config.listen_addr(true).to_string(), "0.0.0.0:8080");
        let explicit = Config {
            listen: Some(SocketAddr::from(([0, 0, 0, 0], 9000))),
            ..Config::default()
        };
        assert_eq!(explicit.listen_addr(false).to_string(), "0.0.0.0:9000");
    }

    #[test]
    fn check_names_the_key_in_full() {
        assert!(Config::default().check().is_ok());
        let mut config = Config::default();
        config.database.statement_timeout = Duration::from_micros(10);
        let error = config.check().expect_err("too short");
        assert_eq!(error.key, "alerting.database.statement_timeout");
        let mut config = Config::default();
        config.database.max_connections = 0;
        assert_eq!(
            config.check().expect_err("zero").key,
            "alerting.database.max_connections"
        );
        let mut config = Config::default();
        config.auth.tokens_file = Some(PathBuf::from("/nonexistent/tokens.yaml"));
        let error = config.check().expect_err("missing file");
        assert_eq!(error.key, "alerting.auth.tokens_file");
        let config = Config {
            shutdown_timeout: Duration::ZERO,
            ..Config::default()
        };
        let error = config.check().expect_err("zero timeout").to_string();
        assert_eq!(
            error,
            "alerting.shutdown_timeout: must be at least 1ms, not 0ns"
        );
        let mut config = Config::default();
        config.outbox.lease = config.slack.timeout;
        assert_eq!(
            config.check().expect_err("lease").key,
            "alerting.outbox.lease"
        );
    }

    #[test]
    fn the_notification_policy_is_checked_with_the_rest() {
        let mut config: Config = yaml_serde::from_str(
            "notify:\n  receivers:\n    - name: hook\n      type: webhook\n      url: https://hooks.example.com/\n\
             \x20     timeout: 90s\n  routes:\n    - receiver: hook\n    - receiver: pager\n",
        )
        .expect("parse");
        assert_eq!(
            config.check().expect_err("unknown receiver").to_string(),
            "alerting.notify.routes[1].receiver: no receiver named \"pager\""
        );
        if let Some(notify) = config.notify.as_mut() {
            notify.routes.pop();
        }
        assert_eq!(
            config.check().expect_err("lease").key,
            "alerting.outbox.lease"
        );
        config.outbox.lease = Duration::from_secs(120);
        assert!(config.check().is_ok());
        assert_eq!(config.policy().expect("policy").receivers()[0].name, "hook");
        // A group's wait must be well within the lease, so that its rows are told from rows another replica holds.
        if let Some(route) = config
            .notify
            .as_mut()
            .and_then(|notify| notify.routes.first_mut())
        {
            route.group_wait = Some(Duration::from_secs(60));
        }
        assert_eq!(
            config.check().expect_err("group wait").to_string(),
            "alerting.outbox.lease: must be longer than twice alerting.notify.routes[0].group_wait (60s), not 120s"
        );
    }

    #[test]
    fn an_open_api_on_a_public_address_needs_anonymous() {
        let mut config = Config {
            listen: Some(SocketAddr::from(([0, 0, 0, 0], 8080))),
            ..Config::default()
        };
        let error = config.check().expect_err("open and public").to_string();
        assert!(error.contains("alerting.auth.anonymous"), "{error}");
        config.auth.anonymous = true;
        assert!(config.check().is_ok());
        let loopback = Config {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            ..Config::default()
        };
        assert!(loopback.check().is_ok());
        let mut with_token = Config {
            listen: Some(SocketAddr::from(([0, 0, 0, 0], 8080))),
            ..Config::default()
        };
        with_token.auth.tokens.push(ApiToken {
            name: "ci".into(),
            token: "s3cret".into(),
            access: Access::Read,
        });
        assert!(with_token.check().is_ok());
    }
}
