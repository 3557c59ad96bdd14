//! Host metrics for the console's Hosts page: per host, CPU, memory, disk and network now and over the last hour.
//!
//! They come from one of two places. In `gomon up` the aggregator keeps the last hour in memory and hands it over
//! as a [`HostHistory`]. Where the console runs apart from the aggregator, they are read from the
//! Prometheus-compatible query API of VictoriaMetrics (`alerting.console.metrics_url`). Without either, the page
//! says how to enable it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ConsoleConfig;

/// Largest answer read from the query API, in bytes: four queries of an hour at one point a minute fit many
/// hundreds of hosts.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// Most hosts shown.
pub const MAX_HOSTS: usize = 500;
/// The window shown.
pub const WINDOW: Duration = Duration::from_secs(3600);
/// Step of the window's points read from the query API.
const STEP_SECONDS: i64 = 60;

/// One measure of a host: its latest value and its points over the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Measure {
    /// The latest value, if any.
    pub now: Option<f64>,
    /// `[unix seconds, value]`, oldest first.
    pub points: Vec<(i64, f64)>,
}

/// One host's measures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostView {
    /// The host's name (its `host` label).
    pub host: String,
    /// When its last sample was taken.
    pub last_seen: Option<DateTime<Utc>>,
    /// Busy CPU, 0 to 1 (every CPU together).
    pub cpu: Measure,
    /// Memory in use, 0 to 1 (1 - MemAvailable / MemTotal).
    pub memory: Measure,
    /// The fullest filesystem, 0 to 1 used.
    pub disk: Measure,
    /// Bytes received and sent per second, every interface but loopback.
    pub network: Measure,
}

/// What `GET /api/v1/hosts` answers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Hosts {
    /// `memory` (kept by the aggregator of `gomon up`), `query` (read from `alerting.console.metrics_url`), or
    /// absent when neither is available.
    pub source: Option<String>,
    /// Where the data comes from, or how to make it available, in a sentence.
    pub detail: String,
    /// The hosts, by name.
    pub hosts: Vec<HostView>,
}

/// A keeper of recent host measures in this process (the aggregator of `gomon up`).
pub trait HostHistory: Send + Sync {
    /// Every host's measures over the last [`WINDOW`], by name.
    fn hosts(&self) -> Vec<HostView>;
}

/// Where the Hosts page reads from.
#[derive(Clone, Default)]
pub enum HostSource {
    /// Nowhere: the page says how to enable it.
    #[default]
    None,
    /// The aggregator in this process.
    Memory(Arc<dyn HostHistory>),
    /// A Prometheus-compatible query API.
    Query(QueryApi),
}

impl std::fmt::Debug for HostSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostSource::None => f.write_str("None"),
            HostSource::Memory(_) => f.write_str("Memory"),
            HostSource::Query(api) => write!(f, "Query({})", api.base),
        }
    }
}

/// Why host metrics could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the query API at {base} {message}")]
pub struct QueryError {
    base: String,
    message: String,
}

impl HostSource {
    /// The source `config` names: its query API when `metrics_url` is set, none otherwise.
    pub fn from_config(config: &ConsoleConfig) -> Self {
        match &config.metrics_url {
            Some(url) => HostSource::Query(QueryApi::new(url, config)),
            None => HostSource::None,
        }
    }

    /// The hosts now.
    pub async fn hosts(&self) -> Result<Hosts, QueryError> {
        match self {
            HostSource::None => Ok(Hosts {
                source: None,
                detail: "No host metrics here. `gomon up` shows them from its own aggregator; a separate \
                         `gomon alerting` reads them from VictoriaMetrics when alerting.console.metrics_url \
                         (GOMON_ALERTING__CONSOLE__METRICS_URL) names its query API, e.g. http://victoria-metrics:8428."
                    .to_owned(),
                hosts: Vec::new(),
            }),
            HostSource::Memory(history) => {
                let mut hosts = history.hosts();
                hosts.truncate(MAX_HOSTS);
                Ok(Hosts {
                    source: Some("memory".to_owned()),
                    detail: "From this process's aggregator: the last hour, kept in memory.".to_owned(),
                    hosts,
                })
            }
            HostSource::Query(api) => api.hosts().await,
        }
    }
}

/// A Prometheus-compatible query API (VictoriaMetrics, Prometheus).
#[derive(Clone)]
pub struct QueryApi {
    client: reqwest::Client,
    base: String,
    host_label: String,
}

/// The PromQL of each measure, by host.
fn queries(host: &str) -> [(&'static str, String); 4] {
    let fs = r#"fstype!~"tmpfs|ramfs|devtmpfs|overlay|squashfs|nsfs|proc|sysfs""#;
    [
        (
            "cpu",
            format!(r#"1 - avg by ({host}) (rate(node_cpu_seconds_total{{mode="idle"}}[2m]))"#),
        ),
        (
            "memory",
            format!(
                "1 - max by ({host}) (node_memory_MemAvailable_bytes) / max by ({host}) (node_memory_MemTotal_bytes)"
            ),
        ),
        (
            "disk",
            format!(
                "max by ({host}) (1 - node_filesystem_avail_bytes{{{fs}}} / node_filesystem_size_bytes{{{fs}}})"
            ),
        ),
        (
            "network",
            format!(
                r#"sum by ({host}) (rate(node_network_receive_bytes_total{{device!="lo"}}[2m])) + sum by ({host}) (rate(node_network_transmit_bytes_total{{device!="lo"}}[2m]))"#
            ),
        ),
    ]
}

/// The part of a query_range answer read.
#[derive(Deserialize)]
struct RangeAnswer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<RangeData>,
}

#[derive(Deserialize)]
struct RangeData {
    result: Vec<RangeSeries>,
}

#[derive(Deserialize)]
struct RangeSeries {
    metric: BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

impl QueryApi {
    fn new(base: &str, config: &ConsoleConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(config.metrics_timeout)
            .connect_timeout(config.metrics_timeout)
            .build()
            .unwrap_or_default();
        Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            host_label: config.host_label.clone(),
        }
    }

    fn error(&self, message: impl Into<String>) -> QueryError {
        QueryError {
            base: self.base.clone(),
            message: message.into(),
        }
    }

    async fn hosts(&self) -> Result<Hosts, QueryError> {
        let end = Utc::now().timestamp();
        let start = end - i64::try_from(WINDOW.as_secs()).unwrap_or(3600);
        let mut hosts: BTreeMap<String, HostView> = BTreeMap::new();
        for (measure, query) in queries(&self.host_label) {
            for series in self.range(&query, start, end).await? {
                let Some(name) = series.metric.get(&self.host_label) else {
                    continue;
                };
                if !hosts.contains_key(name) && hosts.len() >= MAX_HOSTS {
                    continue;
                }
                let host = hosts.entry(name.clone()).or_insert_with(|| HostView {
                    host: name.clone(),
                    ..HostView::default()
                });
                let points: Vec<(i64, f64)> = series
                    .values
                    .iter()
                    .filter_map(|(at, value)| {
                        let value: f64 = value.parse().ok()?;
                        // Whole seconds are what the page draws.
                        #[allow(clippy::cast_possible_truncation)]
                        let at = *at as i64;
                        value.is_finite().then_some((at, value))
                    })
                    .collect();
                if let Some(&(at, _)) = points.last() {
                    let seen = DateTime::from_timestamp(at, 0);
                    host.last_seen = host.last_seen.max(seen);
                }
                let slot = match measure {
                    "cpu" => &mut host.cpu,
                    "memory" => &mut host.memory,
                    "disk" => &mut host.disk,
                    _ => &mut host.network,
                };
                *slot = Measure {
                    now: points.last().map(|&(_, value)| value),
                    points,
                };
            }
        }
        Ok(Hosts {
            source: Some("query".to_owned()),
            detail: format!(
                "From the query API at {}: the last hour, one point a minute.",
                self.base
            ),
            hosts: hosts.into_values().collect(),
        })
    }

    async fn range(
        &self,
        query: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<RangeSeries>, QueryError> {
        let url = format!("{}/api/v1/query_range", self.base);
        let mut response = self
            .client
            .get(&url)
            .query(&[
                ("query", query.to_owned()),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("step", STEP_SECONDS.to_string()),
            ])
            .send()
            .await
            .map_err(|error| self.error(format!("cannot be reached: {error}")))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| self.error(format!("answer cut: {error}")))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(self.error(format!("answered more than {MAX_ANSWER_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let answer: RangeAnswer = serde_json::from_slice(&body).map_err(|error| {
            self.error(format!(
                "answered {status} with something else than a query answer: {error}"
            ))
        })?;
        if answer.status != "success" {
            return Err(self.error(format!(
                "refused the query: {}",
                answer.error.unwrap_or_else(|| status.to_string())
            )));
        }
        Ok(answer.data.map(|data| data.result).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queries_group_by_the_host_label() {
        for (_, query) in queries("instance") {
            assert!(query.contains("by (instance)"), "{query}");
            assert!(!query.contains("by (host)"), "{query}");
        }
    }
}
