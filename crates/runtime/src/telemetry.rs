//! Traces: spans exported over OTLP/HTTP (protobuf) to Jaeger or any OpenTelemetry collector, and the W3C trace
//! context carried across Kafka and HTTP.
//!
//! Off unless an endpoint is set, by `tracing.endpoint` or the standard `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`.
//! Only GoMon's own spans (targets `gomon*`) are exported. Export never holds up the work: finished spans go into a
//! bounded queue that a thread of its own empties in batches; a span that finds the queue full, or whose batch the
//! collector refuses, is dropped and counted in `gomon_trace_spans_dropped_total`.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanProcessor};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use prost::Message as _;
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::must;

/// The `tracing` section of the configuration, shared by every role.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// Base URL of the collector's OTLP/HTTP receiver (`http://jaeger:4318`); spans go to `{endpoint}/v1/traces`.
    /// Unset: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL), then `OTEL_EXPORTER_OTLP_ENDPOINT`; neither set
    /// means no spans are exported.
    pub endpoint: Option<String>,
    /// Fraction of new traces recorded, 0 to 1; a trace continued from another service follows that service's
    /// decision. Unset: `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, else 1.
    pub sampling_ratio: Option<f64>,
    /// `service.name` of the spans. Unset: `OTEL_SERVICE_NAME`, else `gomon-<role>`.
    pub service_name: Option<String>,
    /// HTTP headers sent with every export (an API key, say), on top of `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`.
    pub headers: BTreeMap<String, String>,
    /// Finished spans waiting for export at most; more are dropped and counted.
    pub queue_size: usize,
    /// Spans in one export request at most.
    pub max_batch: usize,
    /// Longest a finished span waits before its batch is sent.
    #[serde(with = "humantime_serde")]
    pub export_interval: Duration,
    /// Time limit of one export request. Unset here: `OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT` (milliseconds).
    #[serde(with = "humantime_serde")]
    pub export_timeout: Option<Duration>,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            sampling_ratio: None,
            service_name: None,
            headers: BTreeMap::new(),
            queue_size: 2048,
            max_batch: 512,
            export_interval: Duration::from_secs(1),
            export_timeout: None,
        }
    }
}

/// What the exporter runs with, once the configuration and the `OTEL_*` environment are merged.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Full URL spans are posted to.
    pub traces_url: String,
    /// How new traces are sampled.
    pub sampler: SamplerChoice,
    /// `service.name`.
    pub service_name: String,
    /// Headers of every export request.
    pub headers: BTreeMap<String, String>,
    /// See [`TracingConfig::queue_size`].
    pub queue_size: usize,
    /// See [`TracingConfig::max_batch`].
    pub max_batch: usize,
    /// See [`TracingConfig::export_interval`].
    pub export_interval: Duration,
    /// Time limit of one export request.
    pub export_timeout: Duration,
}

/// The sampler, as `OTEL_TRACES_SAMPLER` names them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplerChoice {
    /// Every trace.
    AlwaysOn,
    /// No trace.
    AlwaysOff,
    /// A fraction of traces, whatever the parent decided.
    Ratio(f64),
    /// The parent's decision; for a new trace, this fraction.
    ParentBasedRatio(f64),
    /// The parent's decision; a new trace is never sampled.
    ParentBasedOff,
}

impl SamplerChoice {
    fn sampler(self) -> Sampler {
        match self {
            SamplerChoice::AlwaysOn => Sampler::AlwaysOn,
            SamplerChoice::AlwaysOff => Sampler::AlwaysOff,
            SamplerChoice::Ratio(ratio) => Sampler::TraceIdRatioBased(ratio),
            SamplerChoice::ParentBasedRatio(ratio) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
            }
            SamplerChoice::ParentBasedOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        }
    }
}

impl TracingConfig {
    /// Merges the configuration with the `OTEL_*` variables `env` returns (the configuration wins). `None` when
    /// no endpoint is set or `OTEL_SDK_DISABLED=true`; an error names the key or variable at fault.
    pub fn settings(
        &self,
        default_service: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, String> {
        let env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        if env("OTEL_SDK_DISABLED").is_some_and(|value| value.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let traces_url = match &self.endpoint {
            Some(endpoint) => traces_url(endpoint),
            None => match env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
                Some(url) => url,
                None => match env("OTEL_EXPORTER_OTLP_ENDPOINT") {
                    Some(endpoint) => traces_url(&endpoint),
                    None => return Ok(None),
                },
            },
        };
        let url = reqwest::Url::parse(&traces_url)
            .map_err(|error| format!("tracing.endpoint: {traces_url:?} is not a URL: {error}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "tracing.endpoint: {traces_url:?} must be an http:// or https:// URL"
            ));
        }
        for variable in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(protocol) = env(variable) {
                if protocol.trim() != "http/protobuf" {
                    return Err(format!(
                        "{variable}={protocol:?}: GoMon exports over OTLP/HTTP only; set http/protobuf and point \
                         the endpoint at the collector's OTLP/HTTP port (4318 on Jaeger)"
                    ));
                }
                break;
            }
        }
        let sampler = match self.sampling_ratio {
            Some(ratio) if (0.0..=1.0).contains(&ratio) => SamplerChoice::ParentBasedRatio(ratio),
            Some(ratio) => {
                return Err(format!(
                    "tracing.sampling_ratio: {ratio} is not between 0 and 1"
                ));
            }
            None => sampler_from_env(env("OTEL_TRACES_SAMPLER"), env("OTEL_TRACES_SAMPLER_ARG"))?,
        };
        let service_name = self
            .service_name
            .clone()
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| default_service.to_owned());
        let mut headers = BTreeMap::new();
        for variable in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            if let Some(list) = env(variable) {
                headers
                    .extend(parse_headers(&list).map_err(|error| format!("{variable}: {error}"))?);
            }
        }
        headers.extend(self.headers.clone());
        for (name, value) in &headers {
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("tracing.headers: {name:?} is not a header name"))?;
            reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                format!("tracing.headers: the value of {name:?} is not a header value")
            })?;
        }
        let export_timeout = match self.export_timeout {
            Some(timeout) => timeout,
            None => {
                let variable = [
                    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                    "OTEL_EXPORTER_OTLP_TIMEOUT",
                ]
                .into_iter()
                .find_map(|name| env(name).map(|value| (name, value)));
                match variable {
                    Some((name, value)) => value
                        .trim()
                        .parse::<u64>()
                        .map(Duration::from_millis)
                        .map_err(|_| {
                        format!("{name}={value:?}: not a number of milliseconds")
                    })?,
                    None => Duration::from_secs(10),
                }
            }
        };
        if self.queue_size == 0 || self.max_batch == 0 {
            return Err("tracing.queue_size and tracing.max_batch must be at least 1".to_owned());
        }
        if self.export_interval.is_zero() || export_timeout.is_zero() {
            return Err(
                "tracing.export_interval and tracing.export_timeout must be above zero".to_owned(),
            );
        }
        Ok(Some(Settings {
            traces_url,
            sampler,
            service_name,
            headers,
            queue_size: self.queue_size,
            max_batch: self.max_batch.min(self.queue_size),
            export_interval: self.export_interval,
            export_timeout,
        }))
    }
}

/// `{endpoint}/v1/traces`, as the OTLP specification derives the signal URL from the base endpoint.
fn traces_url(endpoint: &str) -> String {
    format!("{}/v1/traces", endpoint.trim().trim_end_matches('/'))
}

/// The sampler `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` name (the specification's default:
/// `parentbased_always_on`).
fn sampler_from_env(
    name: Option<String>,
    argument: Option<String>,
) -> Result<SamplerChoice, String> {
    let ratio = || -> Result<f64, String> {
        match &argument {
            None => Ok(1.0),
            Some(value) => value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|ratio| (0.0..=1.0).contains(ratio))
                .ok_or_else(|| {
                    format!("OTEL_TRACES_SAMPLER_ARG={value:?}: not a ratio between 0 and 1")
                }),
        }
    };
    let name = name.map(|name| name.trim().to_ascii_lowercase());
    Ok(match name.as_deref() {
        None | Some("parentbased_always_on") => SamplerChoice::ParentBasedRatio(1.0),
        Some("always_on") => SamplerChoice::AlwaysOn,
        Some("always_off") => SamplerChoice::AlwaysOff,
        Some("traceidratio") => SamplerChoice::Ratio(ratio()?),
        Some("parentbased_traceidratio") => SamplerChoice::ParentBasedRatio(ratio()?),
        Some("parentbased_always_off") => SamplerChoice::ParentBasedOff,
        Some(other) => {
            return Err(format!(
                "OTEL_TRACES_SAMPLER={other:?}: not one of always_on, always_off, traceidratio, \
                 parentbased_always_on, parentbased_always_off, parentbased_traceidratio"
            ));
        }
    })
}

/// `key1=value1,key2=value2`, values percent-decoded (the `OTEL_EXPORTER_OTLP_HEADERS` format).
fn parse_headers(list: &str) -> Result<Vec<(String, String)>, String> {
    list.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not name=value"))?;
            let value = percent_decode(value.trim()).ok_or_else(|| {
                format!(
                    "the value of {:?} is not valid percent-encoding",
                    name.trim()
                )
            })?;
            Ok((name.trim().to_owned(), value))
        })
        .collect()
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether spans are exported in this process (set once by [`Tracing::start`]). Code on hot paths checks it to
/// create no span at all when nobody would see it.
pub fn enabled() -> bool {
    EXPORTING_TO.get().is_some()
}

/// Where spans go, when they are exported.
pub fn exporting_to() -> Option<&'static str> {
    EXPORTING_TO.get().map(String::as_str)
}

static EXPORTING_TO: OnceLock<String> = OnceLock::new();

/// The exporting side of the process's tracing: the provider to install in the subscriber, and its shutdown.
pub struct Tracing {
    provider: SdkTracerProvider,
}

/// The counters of the export queue.
#[derive(Clone)]
struct ExportMetrics {
    exported: IntCounter,
    dropped: IntCounterVec,
}

impl Tracing {
    /// Starts the export thread for `settings`, registering its counters in `registry`.
    pub fn start(settings: Settings, registry: &Registry) -> Result<Self, String> {
        let exported = must(IntCounter::new(
            "gomon_trace_spans_exported_total",
            "Spans the collector accepted.",
        ));
        let dropped = must(IntCounterVec::new(
            Opts::new(
                "gomon_trace_spans_dropped_total",
                "Spans dropped, by reason: queue_full (export was behind) or export_failed (the collector refused \
                 or could not be reached).",
            ),
            &["reason"],
        ));
        for reason in ["queue_full", "export_failed"] {
            dropped.with_label_values(&[reason]);
        }
        must(registry.register(Box::new(exported.clone())));
        must(registry.register(Box::new(dropped.clone())));
        let metrics = ExportMetrics { exported, dropped };
        let resource = Resource::builder()
            .with_service_name(settings.service_name.clone())
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();
        let processor = QueueProcessor::start(&settings, &resource, metrics)?;
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(settings.sampler.sampler())
            .with_resource(resource)
            .build();
        let _ = EXPORTING_TO.set(settings.traces_url.clone());
        Ok(Self { provider })
    }

    /// A tracer for the `tracing` bridge.
    pub fn tracer(&self) -> opentelemetry_sdk::trace::Tracer {
        self.provider.tracer("gomon")
    }

    /// Sends what is queued (waiting up to the export timeout) and stops the export thread.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("gomon: spans not all exported at exit: {error}");
        }
    }
}

enum Queued {
    Span(Box<SpanData>),
    /// Export everything before this, then answer.
    Flush(mpsc::Sender<()>),
}

/// The span processor: finished, sampled spans into a bounded queue, never waiting.
#[derive(Debug)]
struct QueueProcessor {
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
    fn start(
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

/// The export thread's side: batches from the queue to the collector.
struct Exporter {
    transport: Transport,
    url: String,
    headers: BTreeMap<String, String>,
    timeout: Duration,
    resource: ResourceAttributesWithSchema,
    max_batch: usize,
    interval: Duration,
    metrics: ExportMetrics,
}

/// How export requests travel.
enum Transport {
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
    fn new(url: &str, timeout: Duration) -> Result<Self, String> {
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
    fn run(self, queued: Receiver<Queued>) {
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

/// The W3C trace context propagator (`traceparent`, `tracestate`).
fn propagator() -> &'static TraceContextPropagator {
    static PROPAGATOR: OnceLock<TraceContextPropagator> = OnceLock::new();
    PROPAGATOR.get_or_init(TraceContextPropagator::new)
}

/// The `traceparent` and `tracestate` of `span`, to send along (empty when tracing is off).
pub fn inject(span: &tracing::Span) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    if enabled() {
        propagator().inject_context(&span.context(), &mut fields);
    }
    fields
}

/// Makes `span` a child of the trace context in `fields` (`traceparent`, `tracestate`), when they hold one.
pub fn set_parent(span: &tracing::Span, fields: &HashMap<String, String>) {
    if !enabled() || !fields.contains_key("traceparent") {
        return;
    }
    let parent = propagator().extract(fields);
    if parent.span().span_context().is_valid() {
        // Fails only for a span already started, which callers never pass.
        let _ = span.set_parent(parent);
    }
}

/// The trace id of `span` in hex, when it is being recorded (sampled and exported).
pub fn sampled_trace_id(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    (span_context.is_valid() && span_context.is_sampled())
        .then(|| span_context.trace_id().to_string())
}

/// The trace and span ids of `span` in hex, when it has a valid context (what log lines carry).
pub(crate) fn ids(context: &opentelemetry::Context) -> Option<(String, String)> {
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(config: &TracingConfig, vars: &[(&str, &str)]) -> Result<Option<Settings>, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        config.settings("gomon-agent", |name| vars.get(name).cloned())
    }

    #[test]
    fn off_without_an_endpoint_or_when_disabled() {
        assert_eq!(settings(&TracingConfig::default(), &[]), Ok(None));
        let config = TracingConfig {
            endpoint: Some("http://jaeger:4318".into()),
            ..TracingConfig::default()
        };
        assert_eq!(
            settings(&config, &[("OTEL_SDK_DISABLED", "true")]),
            Ok(None)
        );
    }

    #[test]
    fn the_standard_variables_apply_when_the_configuration_is_silent() {
        let on = settings(
            &TracingConfig::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318/"),
                ("OTEL_SERVICE_NAME", "edge-agent"),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b,x-tenant=ops"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ],
        )
        .expect("valid")
        .expect("on");
        assert_eq!(on.traces_url, "http://jaeger:4318/v1/traces");
        assert_eq!(on.service_name, "edge-agent");
        assert_eq!(on.sampler, SamplerChoice::ParentBasedRatio(0.25));
        assert_eq!(on.headers.get("api-key").map(String::as_str), Some("a b"));
        assert_eq!(on.export_timeout, Duration::from_millis(2500));
        let full = settings(
            &TracingConfig::default(),
            &[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://otel.example/custom",
            )],
        )
        .expect("valid")
        .expect("on");
        assert_eq!(full.traces_url, "https://otel.example/custom");
        assert_eq!(full.service_name, "gomon-agent");
        assert_eq!(full.sampler, SamplerChoice::ParentBasedRatio(1.0));
    }

    #[test]
    fn the_configuration_wins_over_the_variables() {
        let config = TracingConfig {
            endpoint: Some("http://collector:4318".into()),
            sampling_ratio: Some(0.1),
            service_name: Some("agent-eu".into()),
            ..TracingConfig::default()
        };
        let on = settings(
            &config,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318"),
                ("OTEL_SERVICE_NAME", "other"),
                ("OTEL_TRACES_SAMPLER", "always_off"),
            ],
        )
        .expect("valid")
        .expect("on");
        assert_eq!(on.traces_url, "http://collector:4318/v1/traces");
        assert_eq!(on.service_name, "agent-eu");
        assert_eq!(on.sampler, SamplerChoice::ParentBasedRatio(0.1));
    }

    #[test]
    fn bad_values_are_errors_naming_the_key() {
        let endpoint = |url: &str| TracingConfig {
            endpoint: Some(url.into()),
            ..TracingConfig::default()
        };
        let error = settings(&endpoint("jaeger:4317"), &[]).expect_err("no scheme");
        assert!(error.contains("tracing.endpoint"), "{error}");
        let error = settings(
            &endpoint("http://jaeger:4318"),
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
        )
        .expect_err("grpc");
        assert!(
            error.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && error.contains("4318"),
            "{error}"
        );
        let ratio = TracingConfig {
            sampling_ratio: Some(1.5),
            ..endpoint("http://jaeger:4318")
        };
        let error = settings(&ratio, &[]).expect_err("ratio");
        assert!(error.contains("tracing.sampling_ratio"), "{error}");
        let error = settings(
            &endpoint("http://jaeger:4318"),
            &[("OTEL_TRACES_SAMPLER", "sometimes")],
        )
        .expect_err("sampler");
        assert!(error.contains("OTEL_TRACES_SAMPLER"), "{error}");
        let error = settings(
            &endpoint("http://jaeger:4318"),
            &[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")],
        )
        .expect_err("headers");
        assert!(error.contains("OTEL_EXPORTER_OTLP_HEADERS"), "{error}");
    }
}
