//! What the console reads besides alerts, silences and notifications: who is calling with which role, the links it
//! shows, and the hosts' metrics.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{Access, Caller};
use super::error::{ApiError, ErrorBody};
use crate::console::ComponentStatus;
use crate::console::hosts::Hosts;

/// The caller as the console shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct CallerView {
    /// The token's name; absent when the API is served without tokens.
    pub name: Option<String>,
    /// `read`, `ingest`, `operate` or `admin` (`admin` without tokens).
    pub access: String,
}

/// Links the console adds to an alert.
#[derive(Debug, Default, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConsoleLinks {
    /// Base URL of Jaeger (`{jaeger_url}/trace/{trace id}`).
    pub jaeger_url: Option<String>,
    /// A Grafana link.
    pub grafana_url: Option<String>,
}

/// What `GET /api/v1/console` answers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct ConsoleSession {
    /// Who is calling.
    pub caller: CallerView,
    /// GoMon's version.
    pub version: String,
    /// The links of `alerting.console`.
    pub links: ConsoleLinks,
    /// The other parts of this process (`gomon up`'s aggregator), if any.
    pub components: Vec<ComponentStatus>,
}

/// Who is calling and with which role, GoMon's version and the console's links: what the console reads first.
#[utoipa::path(get, path = "/api/v1/console", tag = "console",
    responses((status = 200, description = "The caller, the version and the links", body = ConsoleSession)))]
pub(super) async fn session(
    State(state): State<AppState>,
    Caller(name): Caller,
    access: Option<Extension<Access>>,
) -> Json<ConsoleSession> {
    // Without tokens every request may do everything.
    let access = access.map_or(Access::Admin, |Extension(access)| access);
    Json(ConsoleSession {
        caller: CallerView {
            name,
            access: access.as_str().to_owned(),
        },
        version: env!("CARGO_PKG_VERSION").to_owned(),
        links: state.links.clone(),
        components: state
            .neighbour
            .as_ref()
            .map(|neighbour| neighbour.status())
            .unwrap_or_default(),
    })
}

/// Per host, CPU, memory, disk and network now and over the last hour, from the aggregator of `gomon up` or from
/// the query API of `alerting.console.metrics_url`; without either, `source` is absent and `detail` says how to
/// enable it.
#[utoipa::path(get, path = "/api/v1/hosts", tag = "console",
    responses(
        (status = 200, description = "The hosts", body = Hosts),
        (status = 503, description = "The query API cannot be read", body = ErrorBody),
    ))]
pub(super) async fn hosts(State(state): State<AppState>) -> Result<Json<Hosts>, ApiError> {
    state
        .hosts
        .hosts()
        .await
        .map(Json)
        .map_err(|error| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string()))
}
