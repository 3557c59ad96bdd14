//! Handlers of `/api/v1/alerts`: each parses its request, calls the alerting service and shapes the answer.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{AlertId, JsonBody, OptionalJsonBody};
use crate::model::{
    Alert, AlertFilter, AlertPage, AuditEntry, Change, Cursor, NewAlert, OpenCounts, Severity,
    Status,
};
use crate::service::AlertService;

/// Page size when `limit` is not given.
pub(super) const DEFAULT_LIMIT: u32 = 100;
/// Largest page size.
pub(super) const MAX_LIMIT: u32 = 1000;

/// Longest text of the `q` (title contains) filter, in characters.
const MAX_TITLE_QUERY: usize = 200;

/// Body of acknowledge and resolve (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ByRequest {
    /// Who does it; defaults to the API token's name.
    #[serde(default)]
    pub by: Option<String>,
}

/// Body of assign.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AssignRequest {
    /// The new owner.
    pub assigned_to: String,
    /// Why; kept in the audit trail.
    #[serde(default)]
    pub note: Option<String>,
}

/// An alert's audit trail.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct ActionList {
    /// Oldest first.
    pub actions: Vec<AuditEntry>,
}

/// Query parameters of the listing, read from the query string by [`ListParams::from_query`].
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListParams {
    /// firing, acknowledged or resolved.
    #[param(value_type = Option<String>)]
    pub status: Option<Status>,
    /// P1, P2, P3 or P4.
    #[param(value_type = Option<String>)]
    pub severity: Option<Severity>,
    /// Exact namespace.
    pub namespace: Option<String>,
    /// Exact source.
    pub source: Option<String>,
    /// `key=value`; repeat for several labels (all must match).
    #[param(value_type = Option<Vec<String>>)]
    pub label: Vec<(String, String)>,
    /// Text the title contains, ASCII case ignored; at most 200 characters.
    pub q: Option<String>,
    /// RFC 3339; alerts created at or after.
    pub since: Option<DateTime<Utc>>,
    /// RFC 3339; alerts created before.
    pub until: Option<DateTime<Utc>>,
    /// Page size, default 100, at most 1000.
    pub limit: Option<u32>,
    /// Alerts to skip.
    pub offset: Option<u64>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<String>)]
    pub cursor: Option<Cursor>,
}

impl ListParams {
    /// Reads the listing's query string; 400 naming the parameter when a value is invalid.
    pub(super) fn from_query(query: Option<&str>) -> Result<ListParams, ApiError> {
        let mut params = ListParams::default();
        for (name, value) in super::extract::query_pairs(query)? {
            match name.as_str() {
                "status" => params.status = Some(parse_param(&name, &value)?),
                "severity" => params.severity = Some(parse_param(&name, &value)?),
                "namespace" => params.namespace = Some(value),
                "source" => params.source = Some(value),
                "label" => {
                    let (key, wanted) = value.split_once('=').ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "query parameter `label`: {value:?} is not key=value"
                        ))
                    })?;
                    params.label.push((key.to_owned(), wanted.to_owned()));
                }
                "q" => {
                    if value.chars().count() > MAX_TITLE_QUERY {
                        return Err(ApiError::bad_request(format!(
                            "query parameter `q`: at most {MAX_TITLE_QUERY} characters"
                        )));
                    }
                    params.q = Some(value).filter(|text| !text.is_empty());
                }
                "since" => params.since = Some(parse_time(&name, &value)?),
                "until" => params.until = Some(parse_time(&name, &value)?),
                "limit" => params.limit = Some(parse_limit(&value)?),
                "offset" => params.offset = Some(parse_param(&name, &value)?),
                "cursor" => params.cursor = Some(parse_param(&name, &value)?),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter `{other}`: expected status, severity, namespace, source, label, \
                         q, since, until, limit, offset or cursor"
                    )));
                }
            }
        }
        Ok(params)
    }

    /// The filter these parameters select ([`DEFAULT_LIMIT`] alerts when `limit` is not given).
    pub(super) fn into_filter(self) -> AlertFilter {
        AlertFilter {
            status: self.status,
            severity: self.severity,
            namespace: self.namespace,
            source: self.source,
            labels: self.label,
            title_contains: self.q,
            since: self.since,
            until: self.until,
            limit: self.limit.unwrap_or(DEFAULT_LIMIT),
            offset: self.offset.unwrap_or_default(),
            after: self.cursor,
        }
    }
}

pub(super) fn parse_param<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|error| ApiError::bad_request(format!("query parameter `{name}`: {error}")))
}

/// A page size: 1 to [`MAX_LIMIT`].
pub(super) fn parse_limit(value: &str) -> Result<u32, ApiError> {
    let limit: u32 = parse_param("limit", value)?;
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "query parameter `limit`: {limit} is outside 1..={MAX_LIMIT}"
        )));
    }
    Ok(limit)
}

fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| {
            ApiError::bad_request(format!(
                "query parameter `{name}`: {value:?} is not an RFC 3339 time: {error}"
            ))
        })
}

/// Create an alert, or return the open alert with the same fingerprint.
#[utoipa::path(post, path = "/api/v1/alerts", tag = "alerts", request_body = NewAlert,
    responses(
        (status = 201, description = "Created", body = Alert),
        (status = 200, description = "An open alert with the same fingerprint exists; it is returned", body = Alert),
        (status = 409, description = "The same alert changed concurrently; send again", body = ErrorBody),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ))]
pub(super) async fn create(
    State(service): State<AlertService>,
    Caller(caller): Caller,
    JsonBody(new): JsonBody<NewAlert>,
) -> Result<(StatusCode, HeaderMap, Json<Alert>), ApiError> {
    let (alert, created) = service.create(new, caller).await?;
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/alerts/{}", alert.id)) {
        headers.insert(header::LOCATION, location);
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, headers, Json(alert)))
}

/// List alerts, newest first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", operation_id = "list_alerts", params(ListParams),
    responses(
        (status = 200, description = "A page of alerts", body = AlertPage),
        (status = 400, description = "Invalid query parameter", body = ErrorBody),
        (status = 429, description = "Too many title searches (`q`) at once: retry after `Retry-After`", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ))]
pub(super) async fn list(
    State(service): State<AlertService>,
    RawQuery(query): RawQuery,
) -> Result<Json<AlertPage>, ApiError> {
    let filter = ListParams::from_query(query.as_deref())?.into_filter();
    Ok(Json(service.list(&filter).await?))
}

/// One alert.
#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "alerts",
    params(("id" = uuid::Uuid, Path, description = "Alert id")),
    responses(
        (status = 200, description = "The alert", body = Alert),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 404, description = "No such alert", body = ErrorBody),
    ))]
pub(super) async fn get(
    State(service): State<AlertService>,
    AlertId(id): AlertId,
) -> Result<Json<Alert>, ApiError> {
    Ok(Json(service.get(id).await?))
}

/// Acknowledge a firing alert.
#[utoipa::path(put, path = "/api/v1/alerts/{id}/acknowledge", tag = "alerts",
    params(("id" = uuid::Uuid, Path, description = "Alert id")),
    request_body(content = Option<ByRequest>, description = "Optional; no body is fine"),
    responses(
        (status = 200, description = "Acknowledged", body = Alert),
        (status = 404, description = "No such alert", body = ErrorBody),
        (status = 409, description = "The alert is not firing", body = ErrorBody),
    ))]
pub(super) async fn acknowledge(
    State(service): State<AlertService>,
    AlertId(id): AlertId,
    Caller(caller): Caller,
    OptionalJsonBody(body): OptionalJsonBody<ByRequest>,
) -> Result<Json<Alert>, ApiError> {
    let by = body.unwrap_or_default().by;
    Ok(Json(
        service
            .change(id, Change::Acknowledge { by }, caller)
            .await?,
    ))
}

/// Resolve an alert.
#[utoipa::path(put, path = "/api/v1/alerts/{id}/resolve", tag = "alerts",
    params(("id" = uuid::Uuid, Path, description = "Alert id")),
    request_body(content = Option<ByRequest>, description = "Optional; no body is fine"),
    responses(
        (status = 200, description = "Resolved", body = Alert),
        (status = 404, description = "No such alert", body = ErrorBody),
        (status = 409, description = "Already resolved", body = ErrorBody),
    ))]
pub(super) async fn resolve(
    State(service): State<AlertService>,
    AlertId(id): AlertId,
    Caller(caller): Caller,
    OptionalJsonBody(body): OptionalJsonBody<ByRequest>,
) -> Result<Json<Alert>, ApiError> {
    let by = body.unwrap_or_default().by;
    let change = Change::Resolve { by, note: None };
    Ok(Json(service.change(id, change, caller).await?))
}

/// Assign an alert to someone.
#[utoipa::path(put, path = "/api/v1/alerts/{id}/assign", tag = "alerts",
    params(("id" = uuid::Uuid, Path, description = "Alert id")),
    request_body = AssignRequest,
    responses(
        (status = 200, description = "Assigned", body = Alert),
        (status = 404, description = "No such alert", body = ErrorBody),
        (status = 409, description = "The alert is resolved", body = ErrorBody),
        (status = 422, description = "assigned_to missing or too long", body = ErrorBody),
    ))]
pub(super) async fn assign(
    State(service): State<AlertService>,
    AlertId(id): AlertId,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<AssignRequest>,
) -> Result<Json<Alert>, ApiError> {
    let change = Change::Assign {
        assigned_to: body.assigned_to,
        note: body.note,
    };
    Ok(Json(service.change(id, change, caller).await?))
}

/// Delete an alert (its audit trail is kept, with a copy of it).
#[utoipa::path(delete, path = "/api/v1/alerts/{id}", tag = "alerts",
    params(("id" = uuid::Uuid, Path, description = "Alert id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such alert", body = ErrorBody),
    ))]
pub(super) async fn delete(
    State(service): State<AlertService>,
    AlertId(id): AlertId,
    Caller(caller): Caller,
) -> Result<StatusCode, ApiError> {
    service.delete(id, caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An alert's audit trail.
#[utoipa::path(get, path = "/api/v1/alerts/{id}/actions", tag = "alerts",
    params(("id" = uuid::Uuid, Path, description = "Alert id")),
    responses(
        (status = 200, description = "Every change, oldest first", body = ActionList),
        (status = 404, description = "No such alert", body = ErrorBody),
    ))]
pub(super) async fn actions(
    State(service): State<AlertService>,
    AlertId(id): AlertId,
) -> Result<Json<ActionList>, ApiError> {
    Ok(Json(ActionList {
        actions: service.actions(id).await?,
    }))
}

/// How many alerts are open, by status and severity: the console's counts. Resolved alerts are not counted.
#[utoipa::path(get, path = "/api/v1/alerts/summary", tag = "alerts",
    responses((status = 200, description = "Open alerts by status and severity", body = OpenCounts)))]
pub(super) async fn summary(
    State(service): State<AlertService>,
) -> Result<Json<OpenCounts>, ApiError> {
    Ok(Json(service.open_counts().await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_filter(query: Option<&str>) -> Result<AlertFilter, ApiError> {
        ListParams::from_query(query).map(ListParams::into_filter)
    }

    #[test]
    fn filter_reads_every_parameter() {
        let filter = parse_filter(Some(
            "status=firing&severity=P1&namespace=monitoring&source=api&label=app%3Dkafka&label=tier=db\
             &since=2026-01-01T00:00:00Z&limit=5&offset=10",
        ))
        .expect("valid");
        assert_eq!(filter.status, Some(Status::Firing));
        assert_eq!(filter.severity, Some(Severity::P1));
        assert_eq!(
            filter.labels,
            vec![("app".into(), "kafka".into()), ("tier".into(), "db".into())]
        );
        assert_eq!((filter.limit, filter.offset), (5, 10));
        assert!(filter.since.is_some());
    }

    #[test]
    fn filter_rejects_bad_values_naming_the_parameter() {
        for (query, name) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("severity=P7", "severity"),
            ("since=yesterday", "since"),
            ("label=novalue", "label"),
            ("cursor=zzz", "cursor"),
            ("colour=red", "colour"),
        ] {
            let error = parse_filter(Some(query)).expect_err(query);
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
            assert!(
                format!("{error:?}").contains(&format!("`{name}`")),
                "{query}: {error:?}"
            );
        }
    }
}
