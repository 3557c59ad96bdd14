//! The span processor: finished, sampled spans into a bounded queue that a thread of its own empties in batches.

use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanProcessor};
use prometheus::IntCounter;

use super::export::{Exporter, Transport};
use super::{ExportMetrics, Settings};

pub(super) enum Queued {
    Span(Box<SpanData>),
    /// Export everything before this, then answer.
    Flush(mpsc::Sender<()>),
}

/// The span processor: finished, sampled spans into a bounded queue, never waiting.
#[derive(Debug)]
pub(super) struct QueueProcessor {
    queue: SyncSender<Queued>,
    dropped: IntCounter,
    timeout: Duration,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Queued::Span(_) => "Span",
            Queued::Flush(_) => "Flush",
        })
    }
}

impl QueueProcessor {
    pub(super) fn start(
        settings: &Settings,
        resource: &Resource,
        metrics: ExportMetrics,
    ) -> Result<Self, String> {
        let (queue, queued) = mpsc::sync_channel(settings.queue_size);
        let exporter = Exporter {
            transport: Transport::new(&settings.traces_url, settings.export_timeout)?,
            url: settings.traces_url.clone(),
            headers: settings.headers.clone(),
            timeout: settings.export_timeout,
            resource: ResourceAttributesWithSchema::from(resource),
            max_batch: settings.max_batch,
            interval: settings.export_interval,
            metrics: metrics.clone(),
        };
        // The thread ends when the provider drops this processor, and with it the queue's sender.
        std::thread::Builder::new()
            .name("gomon-trace-export".into())
            .spawn(move || exporter.run(queued))
            .map_err(|error| format!("tracing: cannot start the export thread: {error}"))?;
        Ok(Self {
            queue,
            dropped: metrics.dropped.with_label_values(&["queue_full"]),
            timeout: settings.export_timeout,
        })
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        match self.queue.try_send(Queued::Span(Box::new(span))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Waits until what is queued is exported, for one export timeout at most (a collector that does not answer
    /// holds up the exit that long, no longer).
    fn force_flush(&self) -> OTelSdkResult {
        let deadline = Instant::now() + self.timeout;
        let (done, answer) = mpsc::channel();
        let mut flush = Queued::Flush(done);
        loop {
            match self.queue.try_send(flush) {
                Ok(()) => break,
                Err(TrySendError::Full(again)) if Instant::now() < deadline => {
                    flush = again;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(TrySendError::Full(_)) => return Err(OTelSdkError::Timeout(self.timeout)),
                Err(TrySendError::Disconnected(_)) => return Err(OTelSdkError::AlreadyShutdown),
            }
        }
        answer
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| OTelSdkError::Timeout(self.timeout))
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        self.force_flush()
    }
}
