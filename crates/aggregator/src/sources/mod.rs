//! Where batches come from: the Kafka consumer group ([`kafka`]) for `gomon aggregator`, the in-process queue
//! ([`queue`]) for `gomon up`. Both implement [`crate::pipeline::Source`].

pub mod kafka;
pub mod queue;
