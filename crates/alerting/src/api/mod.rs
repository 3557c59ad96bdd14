//! The HTTP API: routes, authentication, errors, and the OpenAPI document.

mod alerts;
mod auth;
mod error;
mod extract;
mod health;

use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router, middleware};
use prometheus::Registry;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

pub use auth::Auth;
pub use error::{ApiError, ErrorBody};

use crate::service::Alerting;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    core: Alerting,
    registry: Registry,
}

impl FromRef<AppState> for Alerting {
    fn from_ref(state: &AppState) -> Alerting {
        state.core.clone()
    }
}

/// The OpenAPI document of the API.
#[derive(OpenApi)]
#[openapi(
    info(title = "GoMon alerting API", description = "Alerts: create, list, acknowledge, assign, resolve."),
    paths(alerts::create, alerts::list, alerts::get, alerts::acknowledge, alerts::resolve, alerts::assign,
          alerts::delete, alerts::actions, health::live, health::ready, health::database, health::metrics),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI document as pretty JSON, as served at `/api/v1/openapi.json` and kept in `docs/openapi.json`.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such route; see /api/v1/openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}

/// The complete router: the authenticated `/api/v1/alerts` routes, and the open health, metrics and OpenAPI routes.
pub fn router(core: Alerting, registry: Registry, auth: Auth) -> Router {
    let http_metrics = gomon_runtime::http::RequestMetrics::new(&registry, "alerting");
    let state = AppState { core, registry };
    let api = Router::new()
        .route("/api/v1/alerts", get(alerts::list).post(alerts::create))
        .route(
            "/api/v1/alerts/{id}",
            get(alerts::get).delete(alerts::delete),
        )
        .route(
            "/api/v1/alerts/{id}/acknowledge",
            axum::routing::put(alerts::acknowledge),
        )
        .route(
            "/api/v1/alerts/{id}/resolve",
            axum::routing::put(alerts::resolve),
        )
        .route(
            "/api/v1/alerts/{id}/assign",
            axum::routing::put(alerts::assign),
        )
        .route("/api/v1/alerts/{id}/actions", get(alerts::actions))
        .route_layer(middleware::from_fn_with_state(auth, auth::authenticate));
    let open = Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/health/database", get(health::database))
        .route("/metrics", get(health::metrics))
        .route(
            "/api/v1/openapi.json",
            get(|| async { Json(ApiDoc::openapi()) }),
        );
    let router = api
        .merge(open)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .with_state(state);
    http_metrics.layer(router)
}
