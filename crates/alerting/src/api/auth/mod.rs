//! Bearer-token authentication of the API, and what each role may do: `read` reads, `ingest` also posts alerts,
//! `operate` also changes alerts and silences, `admin` also deletes.

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

mod config;

pub use config::{Access, ApiToken, AuthConfig};

/// The configured tokens; empty means every request is allowed.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    tokens: Arc<Vec<ApiToken>>,
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
            tokens: Arc::new(tokens),
        }
    }

    /// Whether any token is configured.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    fn find(&self, presented: &str) -> Option<&ApiToken> {
        // Compare against every token, in time independent of where the bytes differ.
        self.tokens.iter().fold(None, |found, token| {
            if constant_time_eq(token.token.expose().as_bytes(), presented.as_bytes()) {
                Some(token)
            } else {
                found
            }
        })
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
