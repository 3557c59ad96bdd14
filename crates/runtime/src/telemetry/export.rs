//! The export of a batch of spans: OTLP/HTTP protobuf, plain HTTP or TLS, with a time limit and a bounded answer.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::trace::SpanData;
use prost::Message as _;

use super::ExportMetrics;
use super::queue::Queued;

/// The export thread's side: batches from the queue to the collector.
pub(super) struct Exporter {
    pub(super) transport: Transport,
    pub(super) url: String,
    pub(super) headers: BTreeMap<String, String>,
    pub(super) timeout: Duration,
    pub(super) resource: ResourceAttributesWithSchema,
    pub(super) max_batch: usize,
    pub(super) interval: Duration,
    pub(super) metrics: ExportMetrics,
}

/// How export requests travel.
pub(super) enum Transport {
    /// `http://`: one request per connection on a plain TCP socket of the export thread. The usual in-cluster
    /// collector, and far less code kept resident in every agent than a general HTTP client.
    Plain {
        /// `host:port` to connect to.
        address: String,
        /// Path and query of the traces URL.
        path: String,
    },
    /// `https://`: reqwest, on a runtime of the export thread's own.
    Tls(reqwest::Client, tokio::runtime::Runtime),
}

impl Transport {
    pub(super) fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let parsed =
            reqwest::Url::parse(url).map_err(|error| format!("tracing.endpoint: {error}"))?;
        if parsed.scheme() == "http" {
            let host = parsed
                .host_str()
                .ok_or_else(|| format!("tracing.endpoint: {url:?} has no host"))?;
            let port = parsed.port_or_known_default().unwrap_or(80);
            let path = match parsed.query() {
                Some(query) => format!("{}?{query}", parsed.path()),
                None => parsed.path().to_owned(),
            };
            return Ok(Transport::Plain {
                address: format!("{host}:{port}"),
                path,
            });
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|error| format!("tracing: cannot build the HTTP client: {error}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| format!("tracing: cannot start the export runtime: {error}"))?;
        Ok(Transport::Tls(client, runtime))
    }
}

impl Exporter {
    pub(super) fn run(self, queued: Receiver<Queued>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        let mut failing = false;
        loop {
            let deadline = Instant::now() + self.interval;
            let mut flushes = Vec::new();
            let mut closed = false;
            while batch.len() < self.max_batch {
                let wait = deadline.saturating_duration_since(Instant::now());
                match queued.recv_timeout(wait) {
                    Ok(Queued::Span(span)) => batch.push(*span),
                    Ok(Queued::Flush(done)) => {
                        flushes.push(done);
                        break;
                    }
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            if !batch.is_empty() {
                let spans = batch.len() as u64;
                match self.export(std::mem::take(&mut batch)) {
                    Ok(()) => {
                        self.metrics.exported.inc_by(spans);
                        failing = false;
                    }
                    Err(error) => {
                        self.metrics
                            .dropped
                            .with_label_values(&["export_failed"])
                            .inc_by(spans);
                        if !failing {
                            // Logged outside any span; further failures are only counted until one succeeds.
                            tracing::warn!(url = %self.url, %error, spans, "cannot export spans; dropped");
                            failing = true;
                        }
                    }
                }
            }
            for done in flushes {
                let _ = done.send(());
            }
            if closed {
                return;
            }
        }
    }

    /// Posts one batch; an error says why the collector did not take it.
    fn export(&self, spans: Vec<SpanData>) -> Result<(), String> {
        let body = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(spans, &self.resource),
        }
        .encode_to_vec();
        let (status, answer) = match &self.transport {
            Transport::Plain { address, path } => {
                post_plain(address, path, &self.headers, &body, self.timeout)?
            }
            Transport::Tls(client, runtime) => runtime.block_on(async {
                let mut request = client
                    .post(&self.url)
                    .header("content-type", PROTOBUF)
                    .body(body);
                for (name, value) in &self.headers {
                    request = request.header(name, value);
                }
                let response = request.send().await.map_err(|error| error.to_string())?;
                let status = response.status().as_u16();
                let answer = response.text().await.unwrap_or_default();
                Ok::<_, String>((status, answer))
            })?,
        };
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!(
                "HTTP {status}: {}",
                crate::text::truncate(&answer, 200)
            ))
        }
    }
}

const PROTOBUF: &str = "application/x-protobuf";

/// Most of an answer read (a collector's answer to an export is a few bytes; its error text, a few hundred).
const MAX_ANSWER: u64 = 64 * 1024;

/// `POST path` with `body` to `address` over HTTP/1.1 on a connection of its own (`Connection: close`): the
/// status code and the answer's text, within `timeout` for each of connecting, writing and reading.
fn post_plain(
    address: &str,
    path: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    timeout: Duration,
) -> Result<(u16, String), String> {
    use std::io::{Read as _, Write as _};
    use std::net::ToSocketAddrs as _;
    let failed = |error: std::io::Error| format!("{address}: {error}");
    let socket = address
        .to_socket_addrs()
        .map_err(failed)?
        .next()
        .ok_or_else(|| format!("{address}: no address"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&socket, timeout).map_err(failed)?;
    stream.set_write_timeout(Some(timeout)).map_err(failed)?;
    stream.set_read_timeout(Some(timeout)).map_err(failed)?;
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: {PROTOBUF}\r\nContent-Length: {}\r\n\
         Connection: close\r\nUser-Agent: gomon/{}\r\n",
        body.len(),
        env!("CARGO_PKG_VERSION")
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).map_err(failed)?;
    stream.write_all(body).map_err(failed)?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .map_err(failed)?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("{address}: not an HTTP answer"))?;
    let text = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, text)| text)
        .to_owned();
    Ok((status, text))
}
