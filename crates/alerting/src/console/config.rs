//! Configuration of the web console (`alerting.console`).

use std::time::Duration;

use gomon_runtime::config::KeyError;
use serde::{Deserialize, Serialize};

/// The console served at `/`: whether it is on, the links it shows, and where its host metrics come from.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console at `/`. Off: `/` is a 404, the API is unchanged.
    pub enabled: bool,
    /// Base URL of Jaeger for an alert's trace link (`{jaeger_url}/trace/{jaeger_trace_id}`). Unset:
    /// `alerting.slack.jaeger_url`.
    pub jaeger_url: Option<String>,
    /// A Grafana link shown on every alert. Unset: `alerting.slack.grafana_url`.
    pub grafana_url: Option<String>,
    /// Base URL of a Prometheus-compatible query API (VictoriaMetrics: `http://victoria-metrics:8428`) that the
    /// Hosts page reads the agents' metrics from, when the console does not run beside the aggregator (`gomon up`
    /// keeps them in memory and needs none).
    pub metrics_url: Option<String>,
    /// Longest time one query to `metrics_url` may take.
    #[serde(with = "humantime_serde")]
    pub metrics_timeout: Duration,
    /// The label that names a host in `metrics_url`'s series (GoMon's aggregator writes `host`).
    pub host_label: String,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            jaeger_url: None,
            grafana_url: None,
            metrics_url: None,
            metrics_timeout: Duration::from_secs(5),
            host_label: "host".to_owned(),
        }
    }
}

impl ConsoleConfig {
    /// Checks the URLs and the timeout; the error names the key within this section.
    pub fn check(&self) -> Result<(), KeyError> {
        for (key, value) in [
            ("jaeger_url", &self.jaeger_url),
            ("grafana_url", &self.grafana_url),
            ("metrics_url", &self.metrics_url),
        ] {
            if let Some(url) = value
                && reqwest::Url::parse(url)
                    .ok()
                    .is_none_or(|url| !matches!(url.scheme(), "http" | "https"))
            {
                return Err(KeyError::new(key, format!("{url:?} is not an http(s) URL")));
            }
        }
        if self.metrics_timeout < Duration::from_millis(1) {
            return Err(KeyError::new(
                "metrics_timeout",
                format!("must be at least 1ms, not {:?}", self.metrics_timeout),
            ));
        }
        if !gomon_runtime::selector::valid_label_name(&self.host_label) {
            return Err(KeyError::new(
                "host_label",
                format!("{:?} is not a label name", self.host_label),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_the_key() {
        assert!(ConsoleConfig::default().check().is_ok());
        let config = ConsoleConfig {
            metrics_url: Some("ftp://vm".into()),
            ..ConsoleConfig::default()
        };
        assert_eq!(config.check().expect_err("scheme").key, "metrics_url");
        let config = ConsoleConfig {
            jaeger_url: Some("not a url".into()),
            ..ConsoleConfig::default()
        };
        assert_eq!(config.check().expect_err("url").key, "jaeger_url");
        let config = ConsoleConfig {
            host_label: "a-b".into(),
            ..ConsoleConfig::default()
        };
        assert_eq!(config.check().expect_err("label").key, "host_label");
    }
}
