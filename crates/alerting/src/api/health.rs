//! Health endpoints and `/metrics`; these stay open when API tokens are configured.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use crate::console::ComponentStatus;
use crate::pods::watcher::WatcherStatus;

/// A health answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct Health {
    /// `ok` or `unavailable`.
    pub status: String,
    /// Why it is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The Kubernetes pod watcher's state (`/health/ready`, when the watcher is enabled). It does not decide the
    /// status: the API serves whatever the watcher does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<WatcherStatus>,
    /// The other roles of this process (`gomon up`'s aggregator): not ready while one of them is `blocked`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentStatus>,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, body = Health)))]
pub(super) async fn live() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        reason: None,
        kubernetes: None,
        components: Vec::new(),
    })
}

/// The database answers.
#[utoipa::path(get, path = "/health/database", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub(super) async fn database(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    match state.service.store().ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: "ok".into(),
                reason: None,
                kubernetes: None,
                components: Vec::new(),
            }),
        ),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unavailable".into(),
                reason: Some(error.to_string()),
                kubernetes: None,
                components: Vec::new(),
            }),
        ),
    }
}

/// Ready to serve: the database answers. Also tells the Kubernetes pod watcher's state, when it is enabled.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub(super) async fn ready(state: State<AppState>) -> (StatusCode, Json<Health>) {
    let watcher = state.watcher.as_ref().map(|watcher| watcher.get());
    let components = state
        .neighbour
        .as_ref()
        .map(|neighbour| neighbour.status())
        .unwrap_or_default();
    let (mut status, Json(mut health)) = database(state).await;
    health.kubernetes = watcher;
    if let Some(blocked) = components
        .iter()
        .find(|component| component.state == "blocked")
    {
        status = StatusCode::SERVICE_UNAVAILABLE;
        health.status = "unavailable".into();
        health.reason = Some(format!("{}: {}", blocked.name, blocked.detail));
    }
    health.components = components;
    (status, Json(health))
}

/// Prometheus metrics in the text format.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, content_type = "text/plain")))]
pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Err(error) = state.service.refresh_gauges().await {
        tracing::warn!(%error, "alerting_active_alerts and alerting_notification_outbox_pending not refreshed");
    }
    (
        [(header::CONTENT_TYPE, gomon_runtime::metrics::CONTENT_TYPE)],
        gomon_runtime::metrics::render(&state.registry),
    )
}
