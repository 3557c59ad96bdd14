//! Shared plumbing for every GoMon role.
//!
//! Each role (alerting, agent and aggregator) uses the same pieces: layered configuration
//! ([`config`]), one retry schedule ([`backoff`]), JSON logs ([`logging`]), a Prometheus registry with process metrics ([`metrics`]),
//! HTTP serving with request metrics and graceful shutdown ([`http`], [`shutdown`]), outgoing HTTP client
//! authentication and TLS ([`http_client`]), Kafka connection settings
//! ([`kafka`]), memory given back after start-up ([`memory`]), label matchers and series selectors ([`selector`]), traces exported over OTLP ([`telemetry`]) and
//! shortened text ([`text`]).

pub mod backoff;
pub mod config;
pub mod http;
pub mod http_client;
pub mod kafka;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod selector;
pub mod shutdown;
pub mod telemetry;
pub mod text;
