//! `gomon aggregator`: consumes the agents' batches from a Kafka consumer group and writes them to a Prometheus
//! remote write receiver (VictoriaMetrics), at least once: a message's offset is committed only after every sample
//! before it was accepted. The latest sample of every series is also served on `/federate`.
//!
//! Sources -> transform -> sinks: a [`sources`] (the Kafka consumer group, or `gomon up`'s queue) feeds the
//! [`pipeline`], which decodes and [`transform`]s each batch, and hands the series to the [`sinks`] (remote write
//! and `/federate`).

#![warn(missing_docs)]

pub mod config;
pub mod metrics;
pub mod pipeline;
mod role;
pub mod sinks;
pub mod sources;
pub mod transform;

pub use config::AggregatorConfig;
pub use role::{Aggregator, run};
