//! The `gomon aggregator` role: the Kafka source, the pipeline and the HTTP endpoints.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use gomon_runtime::http::SharedListener;
use gomon_runtime::selector::Selector;
use gomon_runtime::shutdown::Shutdown;
use prometheus::Registry;
use tokio::net::TcpListener;

use crate::AggregatorConfig;
use crate::metrics::Metrics;
use crate::pipeline::{self, Limits, SinkHealth, SinkState, Sinks, Source, now_ms};
use crate::sinks::federate::Latest;
use crate::sinks::hosts::HostWindow;
use crate::sinks::remote_write::RemoteWriter;
use crate::sources::kafka::{DeadLetterHealth, KafkaSource};
use crate::transform;

#[derive(Clone)]
struct HttpState {
    registry: Registry,
    health: SinkHealth,
    dead_letter: DeadLetterHealth,
}

async fn serve_metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, gomon_runtime::metrics::CONTENT_TYPE)],
        gomon_runtime::metrics::render(&state.registry),
    )
}

/// `GET /federate`: the series any `match[]` selector selects (every series without one), 400 naming a selector
/// that does not parse.
async fn serve_federate(
    federate: Option<Arc<Latest>>,
    query: Option<String>,
) -> axum::response::Response {
    let Some(latest) = federate else {
        return (StatusCode::NOT_FOUND, "federate is disabled\n").into_response();
    };
    let selectors = gomon_runtime::http::query_pairs(query.as_deref()).and_then(|pairs| {
        pairs
            .iter()
            .filter(|(name, _)| name == "match[]")
            .map(|(_, selector)| {
                Selector::parse(selector).map_err(|error| format!("match[]: {error}"))
            })
            .collect::<Result<Vec<_>, _>>()
    });
    let selectors = match selectors {
        Ok(selectors) => selectors,
        Err(error) => return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
    };
    // Rendering thousands of series is work: off the runtime's threads.
    let rendered = tokio::task::spawn_blocking(move || latest.render(now_ms(), &selectors)).await;
    match rendered {
        Ok(text) => (
            [(header::CONTENT_TYPE, gomon_runtime::metrics::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "rendering /federate failed");
            (StatusCode::SERVICE_UNAVAILABLE, "federate is unavailable\n").into_response()
        }
    }
}

/// How often hosts gone silent leave `/federate`'s store, scraped or not.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// Forgets silent hosts every [`PRUNE_EVERY`] until `shutdown` fires.
async fn prune_periodically(latest: Arc<Latest>, shutdown: Shutdown) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopping = shutdown.wait();
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            _ = every.tick() => latest.prune(now_ms()),
            () = &mut stopping => return,
        }
    }
}

/// Ready unless invalid messages cannot be set aside (the dead-letter topic missing, or a copy being retried:
/// consumption waits) or the receiver refuses our credentials or URL (503); a receiver that is down is reported, not
/// failed.
async fn ready(State(state): State<HttpState>) -> axum::response::Response {
    if let Some(problem) = state.dead_letter.problem() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{{\"status\":\"unavailable\",\"dead_letter\":\"{problem}\"}}"),
        )
            .into_response();
    }
    let (status, body) = match state.health.state() {
        SinkState::Ok => (
            StatusCode::OK,
            "{\"status\":\"ok\",\"remote_write\":\"ok\"}".to_owned(),
        ),
        SinkState::Retrying => (
            StatusCode::OK,
            "{\"status\":\"ok\",\"remote_write\":\"retrying\"}".to_owned(),
        ),
        SinkState::Blocked(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{{\"status\":\"unavailable\",\"remote_write\":\"blocked\",\"reason\":\"{}\"}}",
                reason.reason()
            ),
        ),
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The aggregator's parts, ready to run on a source: Kafka for `gomon aggregator`, the in-process queue for
/// `gomon up`.
pub struct Aggregator {
    sinks: Sinks,
    limits: Limits,
    metrics: Metrics,
    health: SinkHealth,
}

impl Aggregator {
    /// Builds the sinks of `config` (checked by [`AggregatorConfig::check`]) and registers the metrics in
    /// `registry`.
    pub fn new(config: &AggregatorConfig, registry: &Registry) -> anyhow::Result<Self> {
        let remote = config
            .remote_write
            .as_ref()
            .map(RemoteWriter::new)
            .transpose()?;
        let federate = config
            .federate
            .enabled
            .then(|| Arc::new(Latest::new(config.federate.stale_intervals)));
        let limits = config.remote_write.clone().unwrap_or_default();
        Ok(Self {
            sinks: Sinks {
                remote,
                federate,
                hosts: None,
                added_labels: Arc::new(transform::AddedLabels::from_config(config)),
                limits: Arc::new(config.limits.clone()),
            },
            limits: Limits {
                max_samples: limits.max_samples_per_request,
                max_delay: limits.max_delay,
                concurrency: limits.concurrency,
                shutdown_timeout: config.shutdown_timeout,
            },
            metrics: Metrics::new(registry),
            health: SinkHealth::default(),
        })
    }

    /// The remote write receiver's state as the pipeline last saw it.
    pub fn remote_write_health(&self) -> SinkHealth {
        self.health.clone()
    }

    /// Keeps the hosts' recent measures from now on, for a console in the same process; the window to read them.
    pub fn keep_host_window(&mut self) -> Arc<HostWindow> {
        self.sinks
            .hosts
            .get_or_insert_with(|| Arc::new(HostWindow::new()))
            .clone()
    }

    /// `GET /federate` (404 when disabled).
    pub fn federate_router(&self) -> Router {
        let federate = self.sinks.federate.clone();
        Router::new().route(
            "/federate",
            get(move |RawQuery(query): RawQuery| serve_federate(federate.clone(), query)),
        )
    }

    /// Runs the pipeline on `source` until `shutdown` fires or the source ends, then drains and commits.
    pub async fn run<S: Source>(self, source: S, shutdown: Shutdown) {
        if let Some(latest) = &self.sinks.federate {
            tokio::spawn(prune_periodically(latest.clone(), shutdown.clone()));
        }
        pipeline::run(
            source,
            self.sinks,
            self.limits,
            self.metrics,
            self.health,
            shutdown,
        )
        .await;
    }
}

/// Runs the aggregator until `shutdown` fires: stops consuming, writes what it holds, commits, returns.
pub async fn run(
    config: AggregatorConfig,
    registry: Registry,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let aggregator = Aggregator::new(&config, &registry)?;
    let source = KafkaSource::new(&config, aggregator.metrics.clone(), shutdown.clone())?;
    let listener = TcpListener::bind(config.listen).await.map_err(|error| {
        anyhow::anyhow!(
            "aggregator.listen: cannot listen on {}: {error}",
            config.listen
        )
    })?;
    let router = Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/health/live", get(|| async { "{\"status\":\"ok\"}" }))
        .route("/health/ready", get(ready))
        .with_state(HttpState {
            registry,
            health: aggregator.health.clone(),
            dead_letter: source.dead_letter_health(),
        })
        .merge(aggregator.federate_router());
    tracing::info!(
        brokers = %config.kafka.brokers,
        topic = %config.kafka.topic,
        group = %config.kafka.group_id,
        remote_write = config.remote_write.as_ref().map(|remote| remote.url.as_str()).unwrap_or("none"),
        listen = %listener.local_addr()?,
        "aggregator started"
    );
    let server = tokio::spawn(gomon_runtime::http::serve(
        SharedListener(Arc::new(listener)),
        router,
        shutdown.clone(),
        config.http.clone(),
    ));
    tokio::spawn(source.check_dead_letter_topic());
    aggregator.run(source, shutdown).await;
    server.await??;
    tracing::info!("aggregator stopped");
    Ok(())
}
