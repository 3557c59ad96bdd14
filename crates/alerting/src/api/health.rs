//! Health endpoints and `/metrics`; these stay open when API tokens are configured.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;

/// A health answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: String,
    /// Why it is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, body = Health)))]
pub async fn live() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        reason: None,
    })
}

/// The database answers.
#[utoipa::path(get, path = "/health/database", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn database(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    match state.core.store().ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: "ok".into(),
                reason: None,
            }),
        ),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unavailable".into(),
                reason: Some(error.to_string()),
            }),
        ),
    }
}

/// Ready to serve: every dependency is healthy (today, the database).
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn ready(state: State<AppState>) -> (StatusCode, Json<Health>) {
    database(state).await
}

/// Prometheus metrics in the text format.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Err(error) = state.core.refresh_gauges().await {
        tracing::warn!(%error, "alerting_active_alerts and alerting_notification_outbox_pending not refreshed");
    }
    (
        [(header::CONTENT_TYPE, gomon_runtime::metrics::CONTENT_TYPE)],
        gomon_runtime::metrics::render(&state.registry),
    )
}
