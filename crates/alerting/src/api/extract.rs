//! Request extractors whose rejections are [`ApiError`]s: JSON bodies (required or optional) and alert ids.

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::ApiError;

/// Largest request body accepted; larger ones get 413.
pub(super) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A JSON request body that must be present.
pub(super) struct JsonBody<T>(pub T);

/// A JSON request body that may be absent: no body at all (and no content type) reads as `None`.
pub(super) struct OptionalJsonBody<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        read_json(request, state)
            .await?
            .map(JsonBody)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "request body is empty: send a JSON object with Content-Type: application/json",
                )
            })
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        read_json(request, state).await.map(OptionalJsonBody)
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 5 && essence.to_ascii_lowercase().ends_with("+json"))
}

/// Reads the body: `None` when it is empty, 415 when it is not declared JSON, 400 when it does not parse,
/// 422 naming the field when it parses but does not fit `T`, 413 when it is over [`MAX_BODY_BYTES`].
async fn read_json<S: Send + Sync, T: DeserializeOwned>(
    request: Request,
    state: &S,
) -> Result<Option<T>, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap_or_default().to_owned());
    let bytes = Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body is larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                ApiError::new(rejection.status(), rejection.body_text())
            }
        })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match content_type.as_deref() {
        Some(value) if is_json(value) => {}
        Some(value) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Type {value:?}: expected application/json"),
            ));
        }
        None => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "missing Content-Type: expected application/json",
            ));
        }
    }
    parse_json(&bytes).map(Some)
}

/// Parses `bytes` as `T`, telling malformed JSON (400) from JSON of the wrong shape (422 naming the field).
pub(super) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = inner.to_string();
                // serde_path_to_error's path ends at an unknown field already, but stops before a missing one.
                let field = match named_field(&message) {
                    Some(name) if path == "." => name.to_owned(),
                    Some(name) if path != name && !path.ends_with(&format!(".{name}")) => {
                        format!("{path}.{name}")
                    }
                    _ => path,
                };
                ApiError::invalid_field(&field, strip_position(&message))
            }
            _ => ApiError::bad_request(format!("malformed JSON: {inner}")),
        }
    })?;
    deserializer
        .end()
        .map_err(|error| ApiError::bad_request(format!("malformed JSON: {error}")))?;
    Ok(value)
}

/// The field a serde message names: "missing field `x`", "unknown field `x`, expected ...".
fn named_field(message: &str) -> Option<&str> {
    ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next())
}

fn strip_position(message: &str) -> &str {
    message.split(" at line ").next().unwrap_or(message)
}

/// The parameters of a query string, decoded: 400 when there are more than
/// [`gomon_runtime::http::MAX_QUERY_PARAMS`] or one holds a NUL byte.
pub(super) fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    gomon_runtime::http::query_pairs(query).map_err(ApiError::bad_request)
}

/// The `{id}` of an alert path, 400 when it is not a UUID.
pub(super) struct AlertId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for AlertId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        Uuid::parse_str(&raw)
            .map(AlertId)
            .map_err(|error| ApiError::bad_request(format!("invalid alert id {raw:?}: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NewAlert;

    #[test]
    fn syntax_errors_are_400_and_shape_errors_422_with_the_field() {
        let error = parse_json::<NewAlert>(b"{\"source\": ").expect_err("truncated");
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        let error =
            parse_json::<NewAlert>(br#"{"severity":"P1","title":"t"}"#).expect_err("no source");
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(format!("{error:?}").contains("`source`"), "{error:?}");
        let error = parse_json::<NewAlert>(br#"{"source":"a","severity":"P9","title":"t"}"#)
            .expect_err("bad severity");
        assert!(format!("{error:?}").contains("`severity`"), "{error:?}");
        let error = parse_json::<NewAlert>(
            br#"{"source":"a","severity":"P1","title":"t","labels":{"a":1}}"#,
        )
        .expect_err("number label");
        assert!(format!("{error:?}").contains("labels.a"), "{error:?}");
        let error =
            parse_json::<NewAlert>(br#"{"source":"a","severity":"P1","title":"t","priority":1}"#)
                .expect_err("unknown field");
        let debug = format!("{error:?}");
        assert!(debug.contains(r#""field": String("priority")"#), "{debug}");
    }

    #[test]
    fn query_parameters_with_nul_or_too_many_are_refused() {
        assert_eq!(
            query_pairs(Some("a=1&b=x%20y")).expect("valid"),
            vec![("a".into(), "1".into()), ("b".into(), "x y".into())]
        );
        let error = query_pairs(Some("namespace=a%00b")).expect_err("NUL");
        assert!(format!("{error:?}").contains("`namespace`"), "{error:?}");
        let many = vec!["a=1"; gomon_runtime::http::MAX_QUERY_PARAMS + 1].join("&");
        assert_eq!(
            query_pairs(Some(&many)).expect_err("too many").status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}
