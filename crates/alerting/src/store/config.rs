//! Configuration of the alert store (`alerting.database`).

use std::path::PathBuf;
use std::time::Duration;

use gomon_runtime::config::{KeyError, Secret};
use serde::{Deserialize, Serialize};

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

impl DatabaseConfig {
    /// Checks the values and that `url_file` can be read; the error names the key within this section.
    pub fn check(&self) -> Result<(), KeyError> {
        self.postgres_url()?;
        if self.max_connections == 0 {
            return Err(KeyError::new("max_connections", "must be at least 1"));
        }
        for (key, value) in [
            ("acquire_timeout", self.acquire_timeout),
            ("statement_timeout", self.statement_timeout),
        ] {
            if value < Duration::from_millis(1) {
                return Err(KeyError::new(
                    key,
                    format!("must be at least 1ms, not {value:?}"),
                ));
            }
        }
        Ok(())
    }

    /// The PostgreSQL URL from `url` or `url_file`, if any; the error names the key within this section.
    pub fn postgres_url(&self) -> Result<Option<String>, KeyError> {
        if let Some(url) = &self.url {
            return Ok(Some(url.expose().to_owned()));
        }
        match &self.url_file {
            Some(path) => std::fs::read_to_string(path)
                .map(|text| Some(text.trim().to_owned()))
                .map_err(|error| {
                    KeyError::new(
                        "url_file",
                        format!("cannot read {}: {error}", path.display()),
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
    fn check_names_the_key_within_the_section() {
        assert!(DatabaseConfig::default().check().is_ok());
        let short = DatabaseConfig {
            statement_timeout: Duration::from_micros(10),
            ..DatabaseConfig::default()
        };
        assert_eq!(
            short.check().expect_err("too short").key,
            "statement_timeout"
        );
        let none = DatabaseConfig {
            max_connections: 0,
            ..DatabaseConfig::default()
        };
        assert_eq!(none.check().expect_err("zero").key, "max_connections");
        let missing = DatabaseConfig {
            url_file: Some(PathBuf::from("/nonexistent/url")),
            ..DatabaseConfig::default()
        };
        assert_eq!(missing.check().expect_err("missing").key, "url_file");
    }

    #[test]
    fn the_url_is_redacted_in_debug_output() {
        let database = DatabaseConfig {
            url: Some("postgres://user:hunter2@db/alerting".into()),
            ..DatabaseConfig::default()
        };
        assert!(!format!("{database:?}").contains("hunter2"));
    }
}
