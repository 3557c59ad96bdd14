//! `GET /api/v1/notifications`: the outbox, for an operator to see what waits, what went and what failed.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::alerts::{DEFAULT_LIMIT, parse_limit, parse_param};
use super::error::{ApiError, ErrorBody};
use crate::model::Notification;
use crate::service::AlertService;
use crate::store::NotificationFilter;

/// A page of the outbox.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotificationList {
    /// Newest first.
    pub notifications: Vec<Notification>,
    /// How many rows match the filter, across all pages.
    pub total: u64,
}

/// Query parameters of the outbox listing.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct NotificationParams {
    /// pending, sent or failed.
    status: Option<String>,
    /// Only this alert's notifications.
    alert_id: Option<uuid::Uuid>,
    /// Page size, default 100, at most 1000.
    limit: Option<u32>,
    /// Rows to skip.
    offset: Option<u64>,
}

fn parse_filter(query: Option<&str>) -> Result<NotificationFilter, ApiError> {
    let mut filter = NotificationFilter {
        limit: DEFAULT_LIMIT,
        ..NotificationFilter::default()
    };
    for (name, value) in super::extract::query_pairs(query)? {
        match name.as_str() {
            "status" => filter.status = Some(parse_param(&name, &value)?),
            "alert_id" => filter.alert_id = Some(parse_param(&name, &value)?),
            "limit" => filter.limit = parse_limit(&value)?,
            "offset" => filter.offset = parse_param(&name, &value)?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`: expected status, alert_id, limit or offset"
                )));
            }
        }
    }
    Ok(filter)
}

/// The notification outbox, newest first.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications", operation_id = "list_notifications",
    params(NotificationParams),
    responses(
        (status = 200, description = "A page of the outbox", body = NotificationList),
        (status = 400, description = "Invalid query parameter", body = ErrorBody),
    ))]
pub async fn list(
    State(service): State<AlertService>,
    RawQuery(query): RawQuery,
) -> Result<Json<NotificationList>, ApiError> {
    let filter = parse_filter(query.as_deref())?;
    let (notifications, total) = service.notifications(&filter).await?;
    Ok(Json(NotificationList {
        notifications,
        total,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NotificationStatus;

    #[test]
    fn filter_reads_status_and_refuses_unknown_values() {
        let filter = parse_filter(Some("status=failed&limit=5")).expect("valid");
        assert_eq!(filter.status, Some(NotificationStatus::Failed));
        assert_eq!(filter.limit, 5);
        assert!(parse_filter(Some("status=lost")).is_err());
        assert!(parse_filter(Some("alert_id=nope")).is_err());
        assert!(parse_filter(Some("colour=red")).is_err());
    }
}
