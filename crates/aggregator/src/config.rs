//! Configuration of `gomon aggregator` (the `aggregator:` section of the configuration file).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gomon_runtime::config::{KeyError, Secret};
use gomon_runtime::http_client::{Credentials, TlsMaterial};
use gomon_runtime::kafka::{SaslConfig, TlsConfig};
use serde::{Deserialize, Serialize};

/// What stands for the batch's host in `aggregator.instance`.
pub const INSTANCE_HOST: &str = "{host}";

/// `aggregator:`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AggregatorConfig {
    /// Address of `/metrics`, `/federate` and the health endpoints.
    pub listen: SocketAddr,
    /// The listener's limits: header-read timeout and concurrent connections.
    pub http: gomon_runtime::http::ListenerConfig,
    /// Where the batches come from.
    pub kafka: KafkaConfig,
    /// Where the samples go (Prometheus remote write); unset: only the `/federate` endpoint serves them.
    pub remote_write: Option<RemoteWriteConfig>,
    /// The `/federate` endpoint: the latest sample of every series.
    pub federate: FederateConfig,
    /// Labels added to every series that does not carry them already (`cluster`, `env`, ...).
    pub external_labels: BTreeMap<String, String>,
    /// The `job` label of every series that does not carry one (after `external_labels`): node_exporter's
    /// rules and dashboards select `job="node"`. Empty: no `job` label.
    pub job: String,
    /// The `instance` label of every series that does not carry one (after `external_labels`), `{host}` standing
    /// for the host the batch came from (`{host}:9100` gives a scrape's form). Empty: no `instance` label.
    pub instance: String,
    /// How long a stopping aggregator waits for writes in flight before it leaves them to be replayed.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// What one message may hold; a batch over a limit is invalid (counted, copied to the dead-letter topic).
    pub limits: LimitsConfig,
}

/// `aggregator.limits`: bounds on one message, checked before it is expanded into series, so that the memory a
/// message costs stays proportional to its size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest message (its value, in bytes); the consumer's `fetch.message.max.bytes` is set to match.
    pub max_message_bytes: usize,
    /// Longest `host` (a DNS name: 253).
    pub max_host_bytes: usize,
    /// Longest label name.
    pub max_label_name_bytes: usize,
    /// Longest label value, and longest metric name.
    pub max_label_value_bytes: usize,
    /// Most labels on one sample (its own, `host` included).
    pub max_labels_per_sample: usize,
    /// Most samples in one batch.
    pub max_samples_per_batch: usize,
    /// How far in the future a batch's collection time may be (clock skew).
    #[serde(with = "humantime_serde")]
    pub max_future: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 1 << 20,
            max_host_bytes: 253,
            max_label_name_bytes: 128,
            max_label_value_bytes: 4096,
            max_labels_per_sample: 32,
            max_samples_per_batch: 50_000,
            max_future: Duration::from_secs(600),
        }
    }
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9101)),
            http: gomon_runtime::http::ListenerConfig::default(),
            kafka: KafkaConfig::default(),
            remote_write: None,
            federate: FederateConfig::default(),
            external_labels: BTreeMap::new(),
            job: "node".to_owned(),
            instance: INSTANCE_HOST.to_owned(),
            shutdown_timeout: Duration::from_secs(10),
            limits: LimitsConfig::default(),
        }
    }
}

/// `aggregator.kafka`: the consumer group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated `host:port`.
    pub brokers: String,
    /// Topic the agents publish to.
    pub topic: String,
    /// Consumer group shared by every aggregator instance.
    pub group_id: String,
    /// Where a group without committed offsets starts: `earliest` or `latest`.
    pub auto_offset_reset: OffsetReset,
    /// Topic that receives a copy of every invalid message (headers `gomon-invalid-reason`, `gomon-source-*`);
    /// a copy that fails is retried and the partition waits for it. Unset: invalid messages are only counted and
    /// logged.
    pub dead_letter_topic: Option<String>,
    /// Create the dead-letter topic at start-up when it does not exist (with the two settings below).
    pub create_dead_letter_topic: bool,
    /// Partitions of a created dead-letter topic.
    pub dead_letter_partitions: i32,
    /// Replication factor of a created dead-letter topic.
    pub dead_letter_replication_factor: i32,
    /// How long the group waits for a silent member before moving its partitions to another.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// TLS to the brokers.
    pub tls: Option<TlsConfig>,
    /// SASL authentication.
    pub sasl: Option<SaslConfig>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".to_owned(),
            topic: "gomon.metrics".to_owned(),
            group_id: "gomon-aggregator".to_owned(),
            auto_offset_reset: OffsetReset::Earliest,
            dead_letter_topic: None,
            create_dead_letter_topic: false,
            dead_letter_partitions: 1,
            dead_letter_replication_factor: 1,
            session_timeout: Duration::from_secs(30),
            tls: None,
            sasl: None,
        }
    }
}

/// Where a consumer group without committed offsets starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetReset {
    /// The oldest message the brokers hold: nothing published before the group existed is skipped.
    Earliest,
    /// Only messages published from now on.
    Latest,
}

impl OffsetReset {
    /// Its name, as librdkafka's `auto.offset.reset` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        }
    }
}

/// `aggregator.remote_write`: a Prometheus remote write 1.0 receiver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// Receiver URL: VictoriaMetrics `http://HOST:8428/api/v1/write`, Prometheus `http://HOST:9090/api/v1/write`.
    pub url: String,
    /// Most samples in one request.
    pub max_samples_per_request: usize,
    /// Longest a sample waits for its request to fill up.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Time limit of one request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// First wait before retrying a failed request; doubles up to `max_backoff`, with jitter.
    #[serde(with = "humantime_serde")]
    pub min_backoff: Duration,
    /// Longest wait between retries.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// HTTP basic authentication.
    pub basic_auth: Option<BasicAuth>,
    /// Bearer token; or `bearer_token_file`.
    pub bearer_token: Option<Secret>,
    /// File holding the bearer token (a mounted Secret).
    pub bearer_token_file: Option<PathBuf>,
    /// TLS to the receiver.
    pub tls: Option<HttpTlsConfig>,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_samples_per_request: 10_000,
            max_delay: Duration::from_secs(1),
            concurrency: 2,
            timeout: Duration::from_secs(30),
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            basic_auth: None,
            bearer_token: None,
            bearer_token_file: None,
            tls: None,
        }
    }
}

pub use gomon_runtime::http_client::{BasicAuth, HttpTlsConfig};

/// `aggregator.federate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederateConfig {
    /// Serve `/federate`.
    pub enabled: bool,
    /// A series disappears when its host has sent this many collection intervals without it (or nothing at all).
    pub stale_intervals: u32,
}

impl Default for FederateConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            stale_intervals: 5,
        }
    }
}

impl AggregatorConfig {
    /// Checks what types cannot; the error names the key.
    pub fn check(&self) -> Result<(), KeyError> {
        self.http
            .check()
            .map_err(|error| error.within("aggregator.http"))?;
        let kafka = &self.kafka;
        for (key, value) in [
            ("aggregator.kafka.topic", &kafka.topic),
            ("aggregator.kafka.group_id", &kafka.group_id),
        ] {
            if value.trim().is_empty() {
                return Err(KeyError::new(key, "must not be empty"));
            }
        }
        gomon_runtime::kafka::connection(
            &mut rdkafka::ClientConfig::new(),
            &kafka.brokers,
            kafka.tls.as_ref(),
            kafka.sasl.as_ref(),
        )
        .map_err(|error| error.within("aggregator.kafka"))?;
        for name in self.external_labels.keys() {
            if !gomon_runtime::selector::valid_label_name(name) || name == "__name__" {
                return Err(KeyError::new(
                    format!("aggregator.external_labels.{name}"),
                    "is not a valid label name",
                ));
            }
        }
        let rest = self.instance.replace(INSTANCE_HOST, "");
        if rest.contains(['{', '}']) {
            return Err(KeyError::new(
                "aggregator.instance",
                format!(
                    "{:?}: only {} may stand between braces",
                    self.instance, INSTANCE_HOST
                ),
            ));
        }
        if let Some(remote) = &self.remote_write {
            remote.check()?;
        }
        if let Some(topic) = &kafka.dead_letter_topic
            && (topic.trim().is_empty() || *topic == kafka.topic)
        {
            return Err(KeyError::new(
                "aggregator.kafka.dead_letter_topic",
                "must be a topic name other than aggregator.kafka.topic",
            ));
        }
        if kafka.dead_letter_partitions < 1 || kafka.dead_letter_replication_factor < 1 {
            return Err(KeyError::new(
                "aggregator.kafka.dead_letter_partitions",
                "dead_letter_partitions and dead_letter_replication_factor must be at least 1",
            ));
        }
        self.limits.check()?;
        if self.federate.stale_intervals == 0 {
            return Err(KeyError::new(
                "aggregator.federate.stale_intervals",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

impl LimitsConfig {
    fn check(&self) -> Result<(), KeyError> {
        for (name, value) in [
            ("max_message_bytes", self.max_message_bytes),
            ("max_host_bytes", self.max_host_bytes),
            ("max_label_name_bytes", self.max_label_name_bytes),
            ("max_label_value_bytes", self.max_label_value_bytes),
            ("max_labels_per_sample", self.max_labels_per_sample),
            ("max_samples_per_batch", self.max_samples_per_batch),
        ] {
            if value == 0 {
                return Err(KeyError::new(
                    format!("aggregator.limits.{name}"),
                    "must be at least 1",
                ));
            }
        }
        // Within librdkafka's default fetch.max.bytes (50 MiB), which fetch.message.max.bytes may not exceed.
        if self.max_message_bytes > 50 << 20 {
            return Err(KeyError::new(
                "aggregator.limits.max_message_bytes",
                "must be at most 50 MiB",
            ));
        }
        Ok(())
    }
}

impl RemoteWriteConfig {
    fn check(&self) -> Result<(), KeyError> {
        let key = |name: &str| format!("aggregator.remote_write.{name}");
        match reqwest::Url::parse(&self.url) {
            Ok(url) if ["http", "https"].contains(&url.scheme()) => {}
            Ok(_) => return Err(KeyError::new(key("url"), "must be an http or https URL")),
            Err(error) => {
                return Err(KeyError::new(
                    key("url"),
                    format!("{:?}: {error}", self.url),
                ));
            }
        }
        if self.max_samples_per_request == 0 {
            return Err(KeyError::new(
                key("max_samples_per_request"),
                "must be at least 1",
            ));
        }
        if self.concurrency == 0 {
            return Err(KeyError::new(key("concurrency"), "must be at least 1"));
        }
        if self.min_backoff.is_zero() || self.max_backoff < self.min_backoff {
            return Err(KeyError::new(
                key("max_backoff"),
                "min_backoff must be positive and max_backoff at least min_backoff",
            ));
        }
        if self.timeout.is_zero() {
            return Err(KeyError::new(key("timeout"), "must be positive"));
        }
        self.resolve()?;
        Ok(())
    }

    /// Reads and checks what the settings point at: the credentials (inline or from their files) and the TLS files
    /// (parsed as PEM). The error names the key.
    pub(crate) fn resolve(&self) -> Result<ResolvedRemote, KeyError> {
        let section = "aggregator.remote_write";
        let url = reqwest::Url::parse(&self.url)
            .map_err(|error| KeyError::new(format!("{section}.url"), error.to_string()))?;
        let credentials = Credentials::read(
            section,
            self.basic_auth.as_ref(),
            self.bearer_token.as_ref(),
            self.bearer_token_file.as_deref(),
        )?;
        let tls = match &self.tls {
            Some(tls) => tls.read(&format!("{section}.tls"))?,
            None => TlsMaterial::default(),
        };
        Ok(ResolvedRemote {
            url,
            credentials,
            tls,
        })
    }
}

/// The remote write settings with their files read and checked, ready for the client.
pub(crate) struct ResolvedRemote {
    pub(crate) url: reqwest::Url,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) tls: TlsMaterial,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_and_instance_default_to_node_exporter_s_and_the_template_is_checked() {
        let config = AggregatorConfig::default();
        assert_eq!(config.job, "node");
        assert_eq!(config.instance, "{host}");
        assert_eq!(config.check(), Ok(()));
        for instance in ["", "{host}:9100", "node/{host}/{host}"] {
            let config = AggregatorConfig {
                instance: instance.to_owned(),
                ..AggregatorConfig::default()
            };
            assert_eq!(config.check(), Ok(()), "{instance}");
        }
        for instance in ["{hostname}", "{host", "{{host}}"] {
            let config = AggregatorConfig {
                instance: instance.to_owned(),
                ..AggregatorConfig::default()
            };
            let error = config.check().expect_err(instance);
            assert_eq!(error.key, "aggregator.instance", "{instance}");
        }
    }
}
