//! The in-process source of `gomon up`: the agent's encoded batches through a bounded channel instead of Kafka.
//! Nothing to commit, and nowhere to keep invalid messages but the count and the log.

use tokio::sync::mpsc;

use crate::pipeline::{Delivery, Positions, Source};
use crate::transform::Invalid;

/// Reads a channel until every sender is gone.
pub struct QueueSource {
    queue: mpsc::Receiver<Vec<u8>>,
    offset: i64,
}

impl QueueSource {
    /// A source reading `queue`.
    pub fn new(queue: mpsc::Receiver<Vec<u8>>) -> Self {
        Self { queue, offset: 0 }
    }
}

impl Source for QueueSource {
    async fn next(&mut self) -> Option<Delivery> {
        let payload = self.queue.recv().await?;
        self.offset += 1;
        Some(Delivery {
            payload,
            partition: 0,
            offset: self.offset,
            trace_context: Default::default(),
        })
    }

    fn commit(&mut self, _: &Positions) {}

    async fn set_aside(&mut self, _: &Delivery, _: Invalid) {}

    /// The agent stops sending on shutdown and the queue closes: what it holds is written before the pipeline stops.
    fn drains(&self) -> bool {
        true
    }

    fn close(self, _: std::time::Instant) {}
}
