//! Bearer-token authentication of the API, and what each role may do: `read` reads, `ingest` also posts alerts,
//! `operate` also changes alerts and silences, `admin` also deletes.

use std::sync::{Arc, PoisonError, RwLock};

use gomon_runtime::metrics::must;
use gomon_runtime::shutdown::Shutdown;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

mod config;

pub use config::{Access, ApiToken, AuthConfig};

/// The tokens in force; none means every request is allowed. Shared by every request and by
/// [`reload_tokens`], which replaces them when `alerting.auth.tokens_file` changes.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    tokens: Arc<RwLock<Arc<Vec<ApiToken>>>>,
}

/// Who is calling: the name of the token used, if tokens are configured. It is the actor of every change the
/// request makes; a name the request body gives (`by`) is only recorded beside it.
#[derive(Clone, Debug, Default)]
pub(super) struct Caller(pub Option<String>);

/// The least role a request needs: reads need `read`; posting alerts `ingest`; changing alerts and silences
/// `operate`; anything else (deleting alerts, routes added later) `admin`, so that a new route is closed until it
/// is listed here.
pub(super) fn required_access(method: &Method, route: &str) -> Access {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Access::Read;
    }
    match (method.as_str(), route) {
        ("POST", "/api/v1/alerts" | "/api/v2/alerts" | "/api/v1/webhooks/grafana") => {
            Access::Ingest
        }
        (
            "PUT",
            "/api/v1/alerts/{id}/acknowledge"
            | "/api/v1/alerts/{id}/resolve"
            | "/api/v1/alerts/{id}/assign",
        )
        | ("POST", "/api/v2/silences")
        | ("DELETE", "/api/v2/silence/{id}") => Access::Operate,
        _ => Access::Admin,
    }
}

impl Auth {
    /// Authentication with `tokens`.
    pub fn new(tokens: Vec<ApiToken>) -> Self {
        Self {
            tokens: Arc::new(RwLock::new(Arc::new(tokens))),
        }
    }

    /// Whether any token is configured. Fixed for the life of the service: [`Auth::replace`] never empties it.
    pub fn enabled(&self) -> bool {
        !self.current().is_empty()
    }

    fn current(&self) -> Arc<Vec<ApiToken>> {
        // Nothing panics while holding the lock, so a poisoned one still holds a whole set.
        let guard = self.tokens.read().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(&guard)
    }

    /// Puts `tokens` in force, unless they are none while some are: emptying the set would open the API.
    fn replace(&self, tokens: Vec<ApiToken>) -> bool {
        let mut guard = self.tokens.write().unwrap_or_else(PoisonError::into_inner);
        if tokens.is_empty() && !guard.is_empty() {
            return false;
        }
        *guard = Arc::new(tokens);
        true
    }

    fn find(&self, presented: &str) -> Option<ApiToken> {
        // Compare against every token, in time independent of where the bytes differ.
        self.current().iter().fold(None, |found, token| {
            if constant_time_eq(token.token.expose().as_bytes(), presented.as_bytes()) {
                Some(token.clone())
            } else {
                found
            }
        })
    }
}

/// Reads `config.tokens_file` every `config.reload_interval` until `shutdown` and, when its contents changed, puts
/// the tokens it holds (with the inline ones) in force. A file that cannot be read or loaded (unreadable, not YAML,
/// no token, a duplicate) leaves the tokens in force as they were: logged, and counted in
/// `alerting_auth_reloads_total{result="failure"}`.
pub async fn reload_tokens(config: AuthConfig, auth: Auth, registry: Registry, shutdown: Shutdown) {
    let Some(path) = config.tokens_file.clone() else {
        return;
    };
    let reloads = must(IntCounterVec::new(
        Opts::new(
            "alerting_auth_reloads_total",
            "Times alerting.auth.tokens_file changed and was loaded (success) or refused (failure).",
        ),
        &["result"],
    ));
    let in_force = must(IntGauge::new(
        "alerting_auth_tokens",
        "API tokens in force (inline and from alerting.auth.tokens_file).",
    ));
    must(registry.register(Box::new(reloads.clone())));
    must(registry.register(Box::new(in_force.clone())));
    in_force.set(i64::try_from(auth.current().len()).unwrap_or(i64::MAX));
    let mut last = std::fs::read(&path).ok();
    let mut ticks = tokio::time::interval(config.reload_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.clone().wait() => return,
        }
        let contents = std::fs::read(&path).ok();
        if contents == last {
            continue;
        }
        last = contents;
        match config.load_tokens() {
            Ok(tokens) if auth.replace(tokens.clone()) => {
                reloads.with_label_values(&["success"]).inc();
                in_force.set(i64::try_from(tokens.len()).unwrap_or(i64::MAX));
                tracing::info!(tokens = tokens.len(), file = %path.display(), "API tokens reloaded");
            }
            Ok(_) => {
                reloads.with_label_values(&["failure"]).inc();
                tracing::error!(file = %path.display(), "API tokens not reloaded: no token left; the old ones stay");
            }
            Err(error) => {
                reloads.with_label_values(&["failure"]).inc();
                let error = error.within("alerting.auth");
                tracing::error!(%error, "API tokens not reloaded; the tokens in force stay until the file loads");
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Middleware: checks the bearer token and records the [`Caller`].
pub(super) async fn authenticate(
    State(auth): State<Auth>,
    mut request: Request,
    next: Next,
) -> Response {
    if !auth.enabled() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(presented) = presented else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing bearer token: send Authorization: Bearer <token>",
        )
        .into_response();
    };
    let Some(token) = auth.find(presented) else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "invalid bearer token").into_response();
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("", MatchedPath::as_str);
    let needed = required_access(request.method(), route);
    if token.access < needed {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "token `{}` has the role {}; {} {route} needs {}",
                token.name,
                token.access.as_str(),
                request.method(),
                needed.as_str()
            ),
        )
        .into_response();
    }
    request
        .extensions_mut()
        .insert(Caller(Some(token.name.clone())));
    request.extensions_mut().insert(token.access);
    next.run(request).await
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_needs_its_role() {
        for (method, route, needed) in [
            (Method::GET, "/api/v1/alerts", Access::Read),
            (Method::GET, "/api/v2/silences", Access::Read),
            (Method::POST, "/api/v1/alerts", Access::Ingest),
            (Method::POST, "/api/v2/alerts", Access::Ingest),
            (Method::POST, "/api/v1/webhooks/grafana", Access::Ingest),
            (
                Method::PUT,
                "/api/v1/alerts/{id}/acknowledge",
                Access::Operate,
            ),
            (Method::PUT, "/api/v1/alerts/{id}/resolve", Access::Operate),
            (Method::PUT, "/api/v1/alerts/{id}/assign", Access::Operate),
            (Method::POST, "/api/v2/silences", Access::Operate),
            (Method::DELETE, "/api/v2/silence/{id}", Access::Operate),
            (Method::DELETE, "/api/v1/alerts/{id}", Access::Admin),
            (Method::PATCH, "/api/v1/alerts/{id}", Access::Admin),
            (Method::POST, "/api/v1/something-new", Access::Admin),
        ] {
            assert_eq!(required_access(&method, route), needed, "{method} {route}");
        }
    }
}
