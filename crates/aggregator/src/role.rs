//! The `gomon aggregator` role: the Kafka source, the pipeline and the HTTP endpoints.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use gomon_runtime::http::SharedListener;
use gomon_runtime::shutdown::Shutdown;
use prometheus::Registry;
use tokio::net::TcpListener;

use crate::AggregatorConfig;
use crate::federate::Latest;
use crate::kafka::KafkaSource;
use crate::metrics::Metrics;
use crate::pipeline::{self, Limits, SinkHealth, Sinks};
use crate::remote_write::RemoteWriter;

#[derive(Clone)]
struct HttpState {
    registry: Registry,
    federate: Option<Arc<Latest>>,
    health: SinkHealth,
}

async fn serve_metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, gomon_runtime::metrics::CONTENT_TYPE)],
        gomon_runtime::metrics::render(&state.registry),
    )
}

async fn serve_federate(State(state): State<HttpState>) -> impl IntoResponse {
    let Some(latest) = state.federate else {
        return (StatusCode::NOT_FOUND, "federate is disabled\n").into_response();
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    (
        [(header::CONTENT_TYPE, gomon_runtime::metrics::CONTENT_TYPE)],
        latest.render(now_ms),
    )
        .into_response()
}

async fn ready(State(state): State<HttpState>) -> impl IntoResponse {
    let sink = if state.health.failing() {
        "retrying"
    } else {
        "ok"
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"status\":\"ok\",\"remote_write\":\"{sink}\"}}"),
    )
}

/// Runs the aggregator until `shutdown` fires: stops consuming, writes what it holds, commits, returns.
pub async fn run(
    config: AggregatorConfig,
    registry: Registry,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    config.check()?;
    let metrics = Metrics::new(&registry);
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
    let limits = Limits {
        max_samples: limits.max_samples_per_request,
        max_delay: limits.max_delay,
        concurrency: limits.concurrency,
        shutdown_timeout: config.shutdown_timeout,
    };
    let sinks = Sinks {
        remote,
        federate: federate.clone(),
        external_labels: Arc::new(config.external_labels.clone().into_iter().collect()),
    };
    let source = KafkaSource::new(&config.kafka, metrics.clone())?;
    let listener = TcpListener::bind(config.listen).await.map_err(|error| {
        anyhow::anyhow!(
            "aggregator.listen: cannot listen on {}: {error}",
            config.listen
        )
    })?;
    let health = SinkHealth::default();
    let router = Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/federate", get(serve_federate))
        .route("/health/live", get(|| async { "{\"status\":\"ok\"}" }))
        .route("/health/ready", get(ready))
        .with_state(HttpState {
            registry,
            federate,
            health: health.clone(),
        });
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
    ));
    pipeline::run(source, sinks, limits, metrics, health, shutdown).await;
    server.await??;
    tracing::info!("aggregator stopped");
    Ok(())
}
