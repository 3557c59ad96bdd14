//! The agent's integration tests, in one test binary (one link instead of one per file): collection from a fake
//! host built from fixture files and from the real `/proc`, where the `host` label comes from, and the agent
//! against a real Kafka-protocol broker.

mod common;
mod fixture_host;
mod hostname;
mod kafka;
mod real_host;
