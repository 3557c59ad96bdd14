//! Configuration of API authentication (`alerting.auth`): the tokens and the role each grants.

use std::path::PathBuf;
use std::time::Duration;

use gomon_runtime::config::{KeyError, Secret};
use serde::{Deserialize, Serialize};

/// API authentication. With no token configured every request is allowed, which the service accepts only on a
/// loopback address or with `anonymous: true`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Tokens accepted in `Authorization: Bearer <token>`.
    pub tokens: Vec<ApiToken>,
    /// YAML file with more tokens in the same form (a mounted Kubernetes Secret). It must hold at least one.
    pub tokens_file: Option<PathBuf>,
    /// Serve the API without tokens on a non-loopback address. Off: such a configuration stops start-up.
    pub anonymous: bool,
    /// How often `tokens_file` is read again: a token added to or removed from the file (a rotated Kubernetes
    /// Secret) is accepted or refused from then on, without a restart. A file that no longer loads keeps the tokens
    /// in force, and the error is logged and counted.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            tokens_file: None,
            anonymous: false,
            reload_interval: Duration::from_secs(10),
        }
    }
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
    /// given twice. The error names the key within this section.
    pub fn load_tokens(&self) -> Result<Vec<ApiToken>, KeyError> {
        let mut tokens = self.tokens.clone();
        if let Some(path) = &self.tokens_file {
            let at = |message: String| KeyError::new("tokens_file", message);
            let text = std::fs::read_to_string(path)
                .map_err(|error| at(format!("cannot read {}: {error}", path.display())))?;
            // An empty document is `None`.
            let more: Option<Vec<ApiToken>> = yaml_serde::from_str(&text)
                .map_err(|error| at(format!("{}: {error}", path.display())))?;
            let more = more.unwrap_or_default();
            if more.is_empty() {
                return Err(at(format!(
                    "{} holds no token; the API would be open to anyone",
                    path.display()
                )));
            }
            tokens.extend(more);
        }
        if self.tokens_file.is_some() && self.reload_interval < Duration::from_millis(100) {
            return Err(KeyError::new("reload_interval", "must be at least 100ms"));
        }
        for (index, token) in tokens.iter().enumerate() {
            let refuse = |message: String| Err(KeyError::new("tokens", message));
            if token.token.expose().trim().is_empty() {
                return refuse(format!("token `{}` is empty", token.name));
            }
            if token.name.trim().is_empty() {
                return refuse(format!("the name of token {index} is empty"));
            }
            if token.name.chars().count() > crate::model::MAX_ACTOR {
                return refuse(format!(
                    "the name of token {index} is longer than {} characters",
                    crate::model::MAX_ACTOR
                ));
            }
            if tokens[..index]
                .iter()
                .any(|other| other.token == token.token)
            {
                return refuse(format!(
                    "token `{}` has the same secret as an earlier one",
                    token.name
                ));
            }
        }
        Ok(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tokens_file_without_tokens_is_refused() {
        let dir = tempfile::tempdir().expect("temporary directory");
        for (name, text) in [("list", "[]"), ("empty", ""), ("null", "null\n")] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write tokens file");
            let config = AuthConfig {
                tokens_file: Some(path),
                ..AuthConfig::default()
            };
            let error = config.load_tokens().expect_err(name);
            assert_eq!(error.key, "tokens_file");
            assert!(error.message.contains("no token"), "{error}");
        }
        let missing = AuthConfig {
            tokens_file: Some(PathBuf::from("/nonexistent/tokens.yaml")),
            ..AuthConfig::default()
        };
        assert_eq!(
            missing.load_tokens().expect_err("missing").key,
            "tokens_file"
        );
    }

    #[test]
    fn write_tokens_are_admin_and_roles_are_ordered() {
        let tokens: Vec<ApiToken> = yaml_serde::from_str(
            "- {name: a, token: x, access: write}\n- {name: b, token: y, access: ingest}\n",
        )
        .expect("tokens");
        assert_eq!(tokens[0].access, Access::Admin);
        assert_eq!(tokens[1].access, Access::Ingest);
        assert!(Access::Read < Access::Ingest && Access::Ingest < Access::Operate);
        assert!(Access::Operate < Access::Admin);
    }

    #[test]
    fn a_token_given_twice_or_empty_is_refused_and_never_shown() {
        let token = |name: &str, secret: &str| ApiToken {
            name: name.into(),
            token: secret.into(),
            access: Access::Admin,
        };
        let twice = AuthConfig {
            tokens: vec![token("a", "hunter2"), token("b", "hunter2")],
            ..AuthConfig::default()
        };
        let error = twice.load_tokens().expect_err("twice");
        assert_eq!(error.key, "tokens");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let empty = AuthConfig {
            tokens: vec![token("a", " ")],
            ..AuthConfig::default()
        };
        assert!(empty.load_tokens().is_err());
        assert!(!format!("{:?}", token("ci", "hunter2")).contains("hunter2"));
    }
}
