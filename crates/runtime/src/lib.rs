//! Shared plumbing for every GoMon role.
//!
//! Each role (alerting, agent and aggregator) uses the same pieces: layered configuration
//! ([`config`]), one retry schedule ([`backoff`]), JSON logs ([`logging`]), a Prometheus registry with process metrics ([`metrics`]),
//! HTTP serving with request metrics and graceful shutdown ([`http`], [`shutdown`]), Kafka connection settings
//! ([`kafka`]), label matchers and series selectors ([`selector`]) and traces exported over OTLP ([`telemetry`]).

pub mod backoff;
pub mod config;
pub mod http;
pub mod kafka;
pub mod logging;
pub mod metrics;
pub mod selector;
pub mod shutdown;
pub mod telemetry;
