//! Webhooks of other alerting systems: Grafana's webhook contact point.

use axum::extract::State;
use axum::http::StatusCode;

use super::alertmanager::{parse_elements, receive_valid};
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use crate::rule_engines::GrafanaWebhook;
use crate::service::AlertService;
use crate::store::Durability;

/// Receive a Grafana webhook notification: firing alerts open or update an alert (identity: the label set),
/// resolved ones resolve it. Every valid alert is stored; invalid ones are listed in a 400 answer, as on
/// `POST /api/v2/alerts`.
#[utoipa::path(post, path = "/api/v1/webhooks/grafana", tag = "webhooks", request_body = GrafanaWebhook,
    responses(
        (status = 200, description = "Every alert applied"),
        (status = 400, description = "Malformed JSON, or some alerts invalid: the valid ones are stored, \
            `details.invalid` lists the others (index, reason, message)", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ))]
pub(super) async fn grafana(
    State(service): State<AlertService>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<StatusCode, ApiError> {
    let webhook: GrafanaWebhook = serde_json::from_value(body).map_err(|error| {
        ApiError::bad_request(format!(
            "expected Grafana's webhook body with an `alerts` array: {error}"
        ))
    })?;
    let (alerts, rejected) = service.map_grafana_alerts(parse_elements(webhook.alerts));
    // Grafana notifies a firing alert again only after its repeat interval (hours): committed in full.
    receive_valid(&service, alerts, rejected, caller, Durability::Flushed).await
}
