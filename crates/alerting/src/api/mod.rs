//! The HTTP API: routes, authentication, errors, and the OpenAPI document.

mod alertmanager;
mod alerts;
mod auth;
mod console;
mod error;
mod extract;
mod health;
mod notifications;
mod silences;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRef, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router, middleware};
use prometheus::Registry;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

pub use auth::{Access, ApiToken, Auth, AuthConfig, reload_tokens};
pub use console::ConsoleLinks;
pub use error::{ApiError, ErrorBody};

use crate::console::Neighbour;
use crate::console::hosts::HostSource;
use crate::notify::DeliveryStatus;
use crate::pods::WatcherHealth;
use crate::service::AlertService;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    service: AlertService,
    registry: Registry,
    watcher: Option<WatcherHealth>,
    delivery: DeliveryStatus,
    links: ConsoleLinks,
    hosts: HostSource,
    neighbour: Option<Arc<dyn Neighbour>>,
    started: chrono::DateTime<chrono::Utc>,
}

/// The parts of the service the API reports on besides the store, and the console. The default has no pod
/// watcher, no configured receiver and no console.
#[derive(Clone, Default)]
pub struct Components {
    /// The Kubernetes pod watcher's health, for `/health/ready`.
    pub watcher: Option<WatcherHealth>,
    /// How notifications are being delivered, for `/api/v1/notifications/status`.
    pub delivery: DeliveryStatus,
    /// The console's links; `None` serves no console.
    pub console: Option<ConsoleLinks>,
    /// Where the console's Hosts page reads from.
    pub hosts: HostSource,
    /// The other roles of this process, for the console's Status page.
    pub neighbour: Option<Arc<dyn Neighbour>>,
}

impl std::fmt::Debug for Components {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Components")
            .field("watcher", &self.watcher)
            .field("delivery", &self.delivery)
            .field("console", &self.console)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl FromRef<AppState> for AlertService {
    fn from_ref(state: &AppState) -> AlertService {
        state.service.clone()
    }
}

/// The OpenAPI document of the API.
#[derive(OpenApi)]
#[openapi(
    info(title = "GoMon alerting API", description = "Alerts: create, list, acknowledge, assign, resolve."),
    paths(alerts::create, alerts::list, alerts::get, alerts::acknowledge, alerts::resolve, alerts::assign,
          alerts::delete, alerts::actions, alerts::summary, silences::of_alert, notifications::status,
          console::session, console::hosts, health::live, health::ready, health::database, health::metrics,
          notifications::list, alertmanager::post_alerts, alertmanager::get_alerts, alertmanager::get_alert_groups,
          alertmanager::receivers, alertmanager::status,
          silences::list, silences::create, silences::get, silences::expire, silences::actions, webhooks::grafana,
          openapi),
    modifiers(&GuardedRoutes),
)]
pub struct ApiDoc;

/// Declares what every `/api/v1/alerts`, `/api/v1/notifications` and `/api/v2` route has in common: the bearer token, and the answers any of them can
/// give (401, 403, 408, 503).
struct GuardedRoutes;

impl utoipa::Modify for GuardedRoutes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::SecurityRequirement;
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        let common = [
            (
                "401",
                "Missing or invalid bearer token (when tokens are configured)",
            ),
            ("403", "Read-only token on a write"),
            (
                "408",
                "The request took longer than alerting.request_timeout",
            ),
            (
                "503",
                "Database unavailable; retry after Retry-After seconds",
            ),
        ];
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/api/v1/alerts")
                && !path.starts_with("/api/v1/notifications")
                && !path.starts_with("/api/v1/silences")
                && !path.starts_with("/api/v1/webhooks")
                && !path.starts_with("/api/v1/console")
                && !path.starts_with("/api/v1/hosts")
                && !path.starts_with("/api/v2/")
            {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                operation.security = Some(vec![SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
                for (status, description) in common {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .description(description)
                                .content(
                                    "application/json",
                                    ContentBuilder::new()
                                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                                        .build(),
                                )
                                .build()
                                .into()
                        });
                }
            }
        }
    }
}

/// The OpenAPI document as pretty JSON, as served at `/api/v1/openapi.json` and kept in `docs/openapi.json`.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
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

async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request took longer than {} ms", limit.as_millis()),
        )
        .into_response(),
    }
}

/// What the listener serves while the store opens: alive, not ready.
pub fn starting_router() -> Router {
    Router::new()
        .route("/health/live", get(health::live))
        .fallback(|| async {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "starting: waiting for the database",
            )
        })
}

/// The complete router: the authenticated `/api/v1/alerts` routes, and the open health, metrics and OpenAPI routes.
/// A request that takes longer than `request_timeout` is answered 408.
pub fn router(
    service: AlertService,
    registry: Registry,
    auth: Auth,
    request_timeout: Duration,
) -> Router {
    router_with(
        service,
        registry,
        auth,
        request_timeout,
        Components::default(),
    )
}

/// The complete router, reporting on `components` and serving the console when they have one.
pub fn router_with(
    service: AlertService,
    registry: Registry,
    auth: Auth,
    request_timeout: Duration,
    components: Components,
) -> Router {
    let http_metrics = gomon_runtime::http::RequestMetrics::new(&registry, "alerting");
    let console = components.console.is_some();
    let state = AppState {
        service,
        registry,
        watcher: components.watcher,
        delivery: components.delivery,
        links: components.console.unwrap_or_default(),
        hosts: components.hosts,
        neighbour: components.neighbour,
        started: crate::model::now(),
    };
    let api = Router::new()
        .route("/api/v1/alerts", get(alerts::list).post(alerts::create))
        .route("/api/v1/alerts/summary", get(alerts::summary))
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
        .route("/api/v1/alerts/{id}/silences", get(silences::of_alert))
        .route("/api/v1/notifications", get(notifications::list))
        .route("/api/v1/notifications/status", get(notifications::status))
        .route("/api/v1/console", get(console::session))
        .route("/api/v1/hosts", get(console::hosts))
        .route(
            "/api/v2/alerts",
            get(alertmanager::get_alerts).post(alertmanager::post_alerts),
        )
        .route("/api/v2/alerts/groups", get(alertmanager::get_alert_groups))
        .route("/api/v2/receivers", get(alertmanager::receivers))
        .route("/api/v2/status", get(alertmanager::status))
        .route(
            "/api/v2/silences",
            get(silences::list).post(silences::create),
        )
        .route(
            "/api/v2/silence/{id}",
            get(silences::get).delete(silences::expire),
        )
        .route("/api/v1/silences/{id}/actions", get(silences::actions))
        .route(
            "/api/v1/webhooks/grafana",
            axum::routing::post(webhooks::grafana),
        )
        .route_layer(middleware::from_fn_with_state(auth, auth::authenticate));
    // Probes and scrapes are not traced: they would start a trace every few seconds.
    let api = gomon_runtime::http::traced(api);
    let open = Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/health/database", get(health::database))
        .route("/metrics", get(health::metrics))
        .route("/api/v1/openapi.json", get(openapi));
    let open = if console {
        open.merge(crate::console::routes())
    } else {
        open
    };
    let router = api
        .merge(open)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(request_timeout, time_limit))
        .with_state(state);
    http_metrics.layer(router)
}
