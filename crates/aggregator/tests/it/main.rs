//! The aggregator's integration tests, in one test binary: the aggregator between a real Kafka-protocol broker
//! (tansu) and a real VictoriaMetrics (or Prometheus).

mod pipeline;
mod support;
