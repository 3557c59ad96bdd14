//! `GET /api/v1/notifications`: the outbox, for an operator to see what waits, what went and what failed.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::alerts::{DEFAULT_LIMIT, parse_limit, parse_param};
use super::error::{ApiError, ErrorBody};
use crate::model::{Notification, NotificationStatus};
use crate::notify::status::ReceiverStatus;
use crate::service::AlertService;
use crate::store::NotificationFilter;

/// A page of the outbox.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct NotificationList {
    /// Newest first.
    pub notifications: Vec<Notification>,
    /// How many rows match the filter, across all pages.
    pub total: u64,
}

/// Query parameters of the outbox listing, read from the query string by [`NotificationParams::from_query`].
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct NotificationParams {
    /// pending, sent or failed.
    #[param(value_type = Option<String>)]
    pub status: Option<NotificationStatus>,
    /// Only this alert's notifications.
    pub alert_id: Option<uuid::Uuid>,
    /// Only this receiver's notifications.
    pub receiver: Option<String>,
    /// Page size, default 100, at most 1000.
    pub limit: Option<u32>,
    /// Rows to skip.
    pub offset: Option<u64>,
}

impl NotificationParams {
    /// Reads the listing's query string; 400 naming the parameter when a value is invalid.
    pub(super) fn from_query(query: Option<&str>) -> Result<NotificationParams, ApiError> {
        let mut params = NotificationParams::default();
        for (name, value) in super::extract::query_pairs(query)? {
            match name.as_str() {
                "status" => params.status = Some(parse_param(&name, &value)?),
                "alert_id" => params.alert_id = Some(parse_param(&name, &value)?),
                "receiver" => params.receiver = Some(value),
                "limit" => params.limit = Some(parse_limit(&value)?),
                "offset" => params.offset = Some(parse_param(&name, &value)?),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter `{other}`: expected status, alert_id, receiver, limit or offset"
                    )));
                }
            }
        }
        Ok(params)
    }

    /// The filter these parameters select ([`DEFAULT_LIMIT`] rows when `limit` is not given).
    pub(super) fn into_filter(self) -> NotificationFilter {
        NotificationFilter {
            status: self.status,
            alert_id: self.alert_id,
            receiver: self.receiver,
            limit: self.limit.unwrap_or(DEFAULT_LIMIT),
            offset: self.offset.unwrap_or_default(),
        }
    }
}

/// The notification outbox, newest first.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications", operation_id = "list_notifications",
    params(NotificationParams),
    responses(
        (status = 200, description = "A page of the outbox", body = NotificationList),
        (status = 400, description = "Invalid query parameter", body = ErrorBody),
    ))]
pub(super) async fn list(
    State(service): State<AlertService>,
    RawQuery(query): RawQuery,
) -> Result<Json<NotificationList>, ApiError> {
    let filter = NotificationParams::from_query(query.as_deref())?.into_filter();
    let (notifications, total) = service.notifications(&filter).await?;
    Ok(Json(NotificationList {
        notifications,
        total,
    }))
}

/// What `GET /api/v1/notifications/status` answers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct DeliveryView {
    /// Each receiver: its circuit breaker, last error, last success and what waits for it.
    pub receivers: Vec<ReceiverStatus>,
}

/// How delivery is going: each receiver's circuit breaker and when it last changed, its last error and last
/// success, and the notifications waiting in the outbox.
#[utoipa::path(get, path = "/api/v1/notifications/status", tag = "notifications",
    responses(
        (status = 200, description = "The receivers' delivery status", body = DeliveryView),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ))]
pub(super) async fn status(State(state): State<AppState>) -> Result<Json<DeliveryView>, ApiError> {
    let mut receivers = state.delivery.get();
    for (name, count) in state.service.pending_by_receiver().await? {
        match receivers.iter_mut().find(|receiver| receiver.name == name) {
            Some(receiver) => receiver.pending = count,
            // Rows of a receiver no longer configured wait for one of that name.
            None => receivers.push(ReceiverStatus {
                name,
                kind: String::new(),
                pending: count,
                ..ReceiverStatus::default()
            }),
        }
    }
    Ok(Json(DeliveryView { receivers }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_filter(query: Option<&str>) -> Result<NotificationFilter, ApiError> {
        NotificationParams::from_query(query).map(NotificationParams::into_filter)
    }

    #[test]
    fn filter_reads_status_and_refuses_unknown_values() {
        let filter = parse_filter(Some("status=failed&limit=5")).expect("valid");
        assert_eq!(filter.status, Some(NotificationStatus::Failed));
        assert_eq!(filter.limit, 5);
        assert!(parse_filter(Some("status=lost")).is_err());
        assert!(parse_filter(Some("alert_id=nope")).is_err());
        assert!(parse_filter(Some("colour=red")).is_err());
        let filter = parse_filter(Some("receiver=hook")).expect("valid");
        assert_eq!(filter.receiver.as_deref(), Some("hook"));
    }
}
