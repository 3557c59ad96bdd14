//! Configuration of `gomon alerting` (the `alerting:` section of the configuration file).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gomon_runtime::config::Secret;
use serde::{Deserialize, Serialize};

use crate::notify::dispatcher::OutboxConfig;
use crate::notify::slack::SlackConfig;
use crate::pods::KubernetesConfig;
use crate::rule_engines::AlertmanagerConfig;

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
    /// How the notification outbox is delivered and retried.
    pub outbox: OutboxConfig,
    /// The Kubernetes pod watcher (off by default).
    pub kubernetes: KubernetesConfig,
    /// How alerts of the Alertmanager API (Prometheus, vmalert) are mapped and expired.
    pub alertmanager: AlertmanagerConfig,
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
            outbox: OutboxConfig::default(),
            kubernetes: KubernetesConfig::default(),
            alertmanager: AlertmanagerConfig::default(),
            sources: Vec::new(),
        }
    }
}

/// Port the API listens on when `listen` is not set.
pub const DEFAULT_PORT: u16 = 8080;

impl Config {
    /// Checks what types alone cannot: values in range, and that the files named can be read. The message names
    /// the key.
    pub fn check(&self) -> anyhow::Result<()> {
        let tokens = self.auth.load_tokens()?;
        let address = self.listen_addr(!tokens.is_empty());
        if tokens.is_empty() && !address.ip().is_loopback() && !self.auth.anonymous {
            anyhow::bail!(
                "alerting.auth: no API token configured, and alerting.listen ({address}) is not a loopback address: \
                 anyone who can reach it could change and delete alerts. Configure alerting.auth.tokens or \
                 tokens_file, or set alerting.auth.anonymous: true to serve it open on purpose"
            );
        }
        self.http
            .check()
            .map_err(|error| error.within("alerting.http"))?;
        self.database.postgres_url()?;
        self.slack.check()?;
        self.outbox
            .check()
            .map_err(|error| error.within("alerting.outbox"))?;
        self.kubernetes
            .check()
            .map_err(|error| error.within("alerting.kubernetes"))?;
        self.alertmanager
            .check()
            .map_err(|error| error.within("alerting.alertmanager"))?;
        if self.outbox.lease <= self.slack.timeout {
            anyhow::bail!(
                "alerting.outbox.lease: must be longer than alerting.slack.timeout ({:?}), not {:?}",
                self.slack.timeout,
                self.outbox.lease
            );
        }
        let positive = [
            ("alerting.request_timeout", self.request_timeout),
            ("alerting.shutdown_timeout", self.shutdown_timeout),
            (
                "alerting.database.acquire_timeout",
                self.database.acquire_timeout,
            ),
            (
                "alerting.database.statement_timeout",
                self.database.statement_timeout,
            ),
        ];
        for (key, value) in positive {
            if value < Duration::from_millis(1) {
                anyhow::bail!("{key}: must be at least 1ms, not {value:?}");
            }
        }
        if self.sources.len() > 100 {
            anyhow::bail!(
                "alerting.sources: at most 100 sources, not {}",
                self.sources.len()
            );
        }
        if let Some(source) = self.sources.iter().find(|source| {
            source.trim().is_empty() || source.chars().count() > crate::model::MAX_SOURCE
        }) {
            anyhow::bail!(
                "alerting.sources: {source:?} is not 1 to {} characters",
                crate::model::MAX_SOURCE
            );
        }
        if self.database.max_connections == 0 {
            anyhow::bail!("alerting.database.max_connections: must be at least 1");
        }
        Ok(())
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

/// The alert store: PostgreSQL when `url` is set, otherwise SQLite in `data_dir`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// PostgreSQL connection URL (`postgres://user:password@host:5432/alerting`). Unset: embedded SQLite.
    pub url: Option<Secret>,
    /// File holding the PostgreSQL URL (a mounted Kubernetes Secret); used when `url` is unset.
    pub url_file: Option<PathBuf>,
    /// Directory of the embedded SQLite database (`alerting.db`), created when missing.
    pub data_dir: PathBuf,
    /// Most connections the pool opens (PostgreSQL; SQLite uses one writer connection).
    pub max_connections: u32,
    /// How long a request waits for a free or new connection before the API answers 503.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Longest time one SQL statement may run (PostgreSQL `statement_timeout`).
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            url_file: None,
            data_dir: PathBuf::from("gomon-data"),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// API authentication. With no token configured every request is allowed, which the service accepts only on a
/// loopback address or with `anonymous: true`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Tokens accepted in `Authorization: Bearer <token>`.
    pub tokens: Vec<ApiToken>,
    /// YAML file with more tokens in the same form (a mounted Kubernetes Secret). It must hold at least one.
    pub tokens_file: Option<PathBuf>,
    /// Serve the API without tokens on a non-loopback address. Off: such a configuration stops start-up.
    pub anonymous: bool,
}

/// One API token and what it may do.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Who holds it: recorded as the actor of the changes it makes.
    pub name: String,
    /// The secret itself.
    pub token: Secret,
    /// `read`, `ingest`, `operate` or `admin` (`write` is read as `admin`).
    pub access: Access,
}

/// What a token may do. Each role may do everything the roles before it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Read alerts, silences and notifications.
    Read,
    /// Also post alerts: `POST /api/v1/alerts`, `POST /api/v2/alerts`, the Grafana webhook (a rule engine's token).
    Ingest,
    /// Also acknowledge, assign and resolve alerts, and set and expire silences (a person's token).
    Operate,
    /// Everything, deleting alerts included. `write`, the name of earlier versions, means this.
    #[serde(alias = "write")]
    Admin,
}

impl Access {
    /// The name used in the configuration and in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Ingest => "ingest",
            Access::Operate => "operate",
            Access::Admin => "admin",
        }
    }
}

impl AuthConfig {
    /// Every configured token: the inline ones, then those of `tokens_file`. A `tokens_file` that holds no token
    /// is an error (a Secret mounted empty must not open the API), and so is an empty token or name, or one token
    /// given twice.
    pub fn load_tokens(&self) -> anyhow::Result<Vec<ApiToken>> {
        let mut tokens = self.tokens.clone();
        if let Some(path) = &self.tokens_file {
            let text = std::fs::read_to_string(path).map_err(|error| {
                anyhow::anyhow!(
                    "alerting.auth.tokens_file: cannot read {}: {error}",
                    path.display()
                )
            })?;
            let more: Option<Vec<ApiToken>> = serde_yaml_list(&text).map_err(|error| {
                anyhow::anyhow!("alerting.auth.tokens_file {}: {error}", path.display())
            })?;
            let more = more.unwrap_or_default();
            if more.is_empty() {
                anyhow::bail!(
                    "alerting.auth.tokens_file: {} holds no token; the API would be open to anyone",
                    path.display()
                );
            }
            tokens.extend(more);
        }
        for (index, token) in tokens.iter().enumerate() {
            if token.token.expose().trim().is_empty() {
                anyhow::bail!("alerting.auth.tokens: token `{}` is empty", token.name);
            }
            if token.name.trim().is_empty() {
                anyhow::bail!("alerting.auth.tokens: the name of token {index} is empty");
            }
            if token.name.chars().count() > crate::model::MAX_ACTOR {
                anyhow::bail!(
                    "alerting.auth.tokens: the name of token {index} is longer than {} characters",
                    crate::model::MAX_ACTOR
                );
            }
            if tokens[..index]
                .iter()
                .any(|other| other.token == token.token)
            {
                anyhow::bail!(
                    "alerting.auth.tokens: token `{}` has the same secret as an earlier one",
                    token.name
                );
            }
        }
        Ok(tokens)
    }
}

/// Parses a YAML (or JSON) list of tokens; an empty document is `None`.
fn serde_yaml_list(text: &str) -> Result<Option<Vec<ApiToken>>, serde_yaml::Error> {
    serde_yaml::from_str(text)
}

impl DatabaseConfig {
    /// The PostgreSQL URL from `url` or `url_file`, if any.
    pub fn postgres_url(&self) -> anyhow::Result<Option<String>> {
        if let Some(url) = &self.url {
            return Ok(Some(url.expose().to_owned()));
        }
        match &self.url_file {
            Some(path) => std::fs::read_to_string(path)
                .map(|text| Some(text.trim().to_owned()))
                .map_err(|error| {
                    anyhow::anyhow!(
                        "alerting.database.url_file: cannot read {}: {error}",
                        path.display()
                    )
                }),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn check_refuses_out_of_range_values_naming_the_key() {
        assert!(Config::default().check().is_ok());
        let mut config = Config::default();
        config.database.statement_timeout = Duration::from_micros(10);
        let error = config.check().expect_err("too short").to_string();
        assert!(
            error.contains("alerting.database.statement_timeout"),
            "{error}"
        );
        let mut config = Config::default();
        config.database.max_connections = 0;
        assert!(config.check().is_err());
        let mut config = Config::default();
        config.auth.tokens_file = Some(PathBuf::from("/nonexistent/tokens.yaml"));
        let error = config.check().expect_err("missing file").to_string();
        assert!(error.contains("alerting.auth.tokens_file"), "{error}");
    }

    #[test]
    fn a_tokens_file_without_tokens_stops_start_up() {
        let dir = tempfile::tempdir().expect("temporary directory");
        for (name, text) in [("list", "[]"), ("empty", ""), ("null", "null\n")] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write tokens file");
            let mut config = Config::default();
            config.auth.tokens_file = Some(path);
            let error = config.check().expect_err(name).to_string();
            assert!(error.contains("alerting.auth.tokens_file"), "{error}");
            assert!(error.contains("no token"), "{error}");
        }
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

    #[test]
    fn write_tokens_are_admin_and_roles_are_ordered() {
        let tokens: Vec<ApiToken> = serde_yaml::from_str(
            "- {name: a, token: x, access: write}\n- {name: b, token: y, access: ingest}\n",
        )
        .expect("tokens");
        assert_eq!(tokens[0].access, Access::Admin);
        assert_eq!(tokens[1].access, Access::Ingest);
        assert!(Access::Read < Access::Ingest && Access::Ingest < Access::Operate);
        assert!(Access::Operate < Access::Admin);
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let token = ApiToken {
            name: "ci".into(),
            token: "hunter2".into(),
            access: Access::Admin,
        };
        let database = DatabaseConfig {
            url: Some("postgres://user:hunter2@db/alerting".into()),
            ..DatabaseConfig::default()
        };
        assert!(!format!("{token:?}{database:?}").contains("hunter2"));
    }
}
