//! Bearer-token authentication of the API: read-only tokens may only read, write tokens may do everything.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::config::{Access, ApiToken};

/// The configured tokens; empty means every request is allowed.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    tokens: Arc<Vec<ApiToken>>,
}

/// Who is calling: the name of the token used, if tokens are configured.
#[derive(Clone, Debug, Default)]
pub struct Caller(pub Option<String>);

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
            if constant_time_eq(token.token.as_bytes(), presented.as_bytes()) {
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
pub async fn authenticate(State(auth): State<Auth>, mut request: Request, next: Next) -> Response {
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
    let reads = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if token.access == Access::Read && !reads {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!("token `{}` is read-only", token.name),
        )
        .into_response();
    }
    request
        .extensions_mut()
        .insert(Caller(Some(token.name.clone())));
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
