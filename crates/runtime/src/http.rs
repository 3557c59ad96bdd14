//! HTTP serving shared by the roles: the listener's limits (header-read timeout, concurrent connections), request
//! metrics by route template, request spans, and graceful shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus::{HistogramOpts, HistogramVec, Registry};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::config::KeyError;
use crate::metrics::must;
use crate::shutdown::Shutdown;
use crate::telemetry;

/// Latency buckets in seconds, fine-grained below 10 ms where an API should live.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Records `{prefix}_http_request_duration_seconds{method,route,status}` for every request.
///
/// `route` is the matched route template (`/api/v1/alerts/{id}`), never the raw path; requests that match no
/// route are recorded as `unmatched`.
#[derive(Clone)]
pub struct RequestMetrics {
    duration: HistogramVec,
}

impl RequestMetrics {
    /// Creates the histogram and registers it in `registry`.
    pub fn new(registry: &Registry, prefix: &str) -> Self {
        let duration = must(HistogramVec::new(
            HistogramOpts::new(
                format!("{prefix}_http_request_duration_seconds"),
                "Time to answer an HTTP request, by method, route template and status code.",
            )
            .buckets(BUCKETS.to_vec()),
            &["method", "route", "status"],
        ));
        must(registry.register(Box::new(duration.clone())));
        Self { duration }
    }

    /// Wraps `router` so that every request is measured.
    pub fn layer<S: Clone + Send + Sync + 'static>(self, router: Router<S>) -> Router<S> {
        router.layer(middleware::from_fn_with_state(self, measure))
    }
}

async fn measure(State(metrics): State<RequestMetrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    metrics
        .duration
        .with_label_values(&[method, route.as_str(), response.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The `method` label of a request: one of the standard methods, else `other`, so that made-up methods cannot
/// create series.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN
        .iter()
        .find(|(known, _)| known == method)
        .map_or("other", |(_, label)| label)
}

/// Wraps every request of `router` in a server span, continuing the caller's trace when its `traceparent` header
/// has one; the span is named after the route template and records the status code (5xx is an error). Nothing is
/// done when spans are not exported.
pub fn traced<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(middleware::from_fn(trace_request))
}

async fn trace_request(request: Request, next: Next) -> Response {
    if !telemetry::enabled() {
        return next.run(request).await;
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format_args!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = %route,
        url.path = request.uri().path(),
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let context: HashMap<String, String> = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|name| {
            let value = request.headers().get(name)?.to_str().ok()?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect();
    telemetry::set_parent(&span, &context);
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}

/// A listener that several servers can use one after the other (a start-up router, then the real one), so the
/// port stays bound throughout.
#[derive(Clone, Debug)]
pub struct SharedListener(pub Arc<TcpListener>);

impl axum::serve::Listener for SharedListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.0.accept().await {
                Ok(accepted) => return accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait rather than spin; the listener stays usable.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// The limits of an HTTP listener: the `http` section of each role (`alerting.http`, `agent.http`,
/// `aggregator.http`), so that no client can hold connections open without sending a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerConfig {
    /// Longest time a client may take to send a request's headers, counted from the end of the previous request
    /// on a kept-alive connection; then the connection is closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Most connections served at once; further ones wait in the kernel's accept queue until one closes.
    pub max_connections: usize,
}

/// The largest `max_connections` accepted.
pub const MAX_CONNECTIONS: usize = 1 << 20;

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

impl ListenerConfig {
    /// Checks the values; the error names the field at fault (`header_read_timeout`), which the role puts
    /// within its section (`alerting.http`).
    pub fn check(&self) -> Result<(), KeyError> {
        if self.header_read_timeout < Duration::from_millis(1) {
            return Err(KeyError::new(
                "header_read_timeout",
                format!("must be at least 1ms, not {:?}", self.header_read_timeout),
            ));
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS {
            return Err(KeyError::new(
                "max_connections",
                format!(
                    "must be 1 to {MAX_CONNECTIONS}, not {}",
                    self.max_connections
                ),
            ));
        }
        Ok(())
    }
}

/// Most query parameters one request may give.
pub const MAX_QUERY_PARAMS: usize = 64;

/// The parameters of a query string, decoded. The error (for a 400) says why when there are more than
/// [`MAX_QUERY_PARAMS`] or one holds a NUL byte (no stored text can hold one, so it could match nothing).
pub fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if pairs.len() == MAX_QUERY_PARAMS {
            return Err(format!("more than {MAX_QUERY_PARAMS} query parameters"));
        }
        if name.contains('\0') || value.contains('\0') {
            return Err(format!(
                "query parameter `{}`: must not contain a NUL byte",
                name.replace('\0', "\\u0000")
            ));
        }
        pairs.push((name.into_owned(), value.into_owned()));
    }
    Ok(pairs)
}

/// Serves `router` on `listener` within `limits` until `shutdown` fires, then stops accepting, closes idle
/// connections and finishes the requests in flight.
pub async fn serve(
    listener: SharedListener,
    router: Router,
    shutdown: Shutdown,
    limits: ListenerConfig,
) -> std::io::Result<()> {
    use axum::serve::Listener as _;
    let mut listener = listener;
    let connections = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, MAX_CONNECTIONS),
    ));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let stopping = shutdown.wait();
    tokio::pin!(stopping);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut stopping => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stopping => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
            drop(permit);
        });
    }
    graceful.shutdown().await;
    Ok(())
}
