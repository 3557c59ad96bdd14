//! Silences of the Alertmanager API v2: `GET`/`POST /api/v2/silences`, `GET`/`DELETE /api/v2/silence/{id}`.

use axum::Json;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::alertmanager::mapping_error;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{AlertId, JsonBody};
use crate::model;
use crate::service::AlertService;
use crate::silence::{Matcher, PostableSilence, Silence, SilenceAction};

/// Where a silence is: `pending` (not started), `active` or `expired`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct SilenceStatus {
    /// `pending`, `active` or `expired`.
    pub state: String,
}

/// A silence as the Alertmanager API returns it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct GettableSilence {
    /// Its id.
    pub id: Uuid,
    /// Its state now.
    pub status: SilenceStatus,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Every one must match for an alert to be muted.
    pub matchers: Vec<Matcher>,
    /// When it starts.
    pub starts_at: DateTime<Utc>,
    /// When it ends.
    pub ends_at: DateTime<Utc>,
    /// Who made it.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

impl GettableSilence {
    fn new(silence: Silence, now: DateTime<Utc>) -> Self {
        GettableSilence {
            id: silence.id,
            status: SilenceStatus {
                state: silence.state(now).into(),
            },
            updated_at: silence.updated_at,
            starts_at: silence.starts_at,
            ends_at: silence.ends_at,
            matchers: silence.matchers,
            created_by: silence.created_by,
            comment: silence.comment,
        }
    }
}

/// The answer to a posted silence.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SilenceCreated {
    /// The silence's id.
    #[serde(rename = "silenceID")]
    pub silence_id: Uuid,
}

/// Query parameters of `GET /api/v2/silences`, read from the query string by [`SilencesParams::from_query`].
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct SilencesParams {
    /// Label matcher; keeps the silences that have a matcher equal to it (repeat: all must be there).
    #[param(value_type = Option<Vec<String>>)]
    pub filter: Vec<Matcher>,
}

impl SilencesParams {
    /// Reads the query string; 400 naming the parameter when it is invalid.
    pub(super) fn from_query(query: Option<&str>) -> Result<SilencesParams, ApiError> {
        let mut params = SilencesParams::default();
        for (name, value) in super::extract::query_pairs(query)? {
            match name.as_str() {
                "filter" => params.filter.push(Matcher::parse(&value).map_err(|error| {
                    ApiError::bad_request(format!("query parameter `filter`: {error}"))
                })?),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter `{other}`: expected filter"
                    )));
                }
            }
        }
        Ok(params)
    }
}

/// A silence id in the path; 400 when it is not a UUID.
pub(super) struct SilenceId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for SilenceId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        Uuid::parse_str(&id)
            .map(SilenceId)
            .map_err(|_| ApiError::bad_request(format!("{id:?} is not a silence id")))
    }
}

/// List silences, expired ones included (Alertmanager API v2).
#[utoipa::path(get, path = "/api/v2/silences", tag = "alertmanager", params(SilencesParams),
    responses(
        (status = 200, description = "The silences", body = Vec<GettableSilence>),
        (status = 400, description = "Invalid query parameter", body = ErrorBody),
    ))]
pub(super) async fn list(
    State(service): State<AlertService>,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<GettableSilence>>, ApiError> {
    let wanted = SilencesParams::from_query(query.as_deref())?.filter;
    let now = model::now();
    let silences = service
        .silences()
        .await?
        .into_iter()
        .filter(|silence| wanted.iter().all(|w| silence.matchers.contains(w)))
        .map(|silence| GettableSilence::new(silence, now))
        .collect();
    Ok(Json(silences))
}

/// The silences that mute an alert now, or will when they start; expired ones are left out.
#[utoipa::path(get, path = "/api/v1/alerts/{id}/silences", tag = "alerts",
    params(("id" = uuid::Uuid, Path, description = "Alert id")),
    responses(
        (status = 200, description = "Active and pending silences matching the alert's labels", body = Vec<GettableSilence>),
        (status = 404, description = "No such alert", body = ErrorBody),
    ))]
pub(super) async fn of_alert(
    State(service): State<AlertService>,
    AlertId(id): AlertId,
) -> Result<Json<Vec<GettableSilence>>, ApiError> {
    let now = model::now();
    Ok(Json(
        service
            .silences_of(id)
            .await?
            .into_iter()
            .map(|silence| GettableSilence::new(silence, now))
            .collect(),
    ))
}

/// Create a silence, or change the one `id` names. With API tokens, `createdBy` is the token's name.
#[utoipa::path(post, path = "/api/v2/silences", tag = "alertmanager", request_body = PostableSilence,
    responses(
        (status = 200, description = "Stored", body = SilenceCreated),
        (status = 400, description = "Invalid silence", body = ErrorBody),
        (status = 404, description = "No silence with that id", body = ErrorBody),
    ))]
pub(super) async fn create(
    State(service): State<AlertService>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Json<SilenceCreated>, ApiError> {
    let posted: PostableSilence = serde_path_to_error::deserialize(body).map_err(|error| {
        ApiError::bad_request(format!("silence {}: {}", error.path(), error.inner()))
    })?;
    let id = service
        .post_silence(posted, caller)
        .await
        .map_err(mapping_error)?;
    Ok(Json(SilenceCreated { silence_id: id }))
}

/// One silence.
#[utoipa::path(get, path = "/api/v2/silence/{id}", tag = "alertmanager",
    params(("id" = uuid::Uuid, Path, description = "Silence id")),
    responses(
        (status = 200, description = "The silence", body = GettableSilence),
        (status = 404, description = "No such silence", body = ErrorBody),
    ))]
pub(super) async fn get(
    State(service): State<AlertService>,
    SilenceId(id): SilenceId,
) -> Result<Json<GettableSilence>, ApiError> {
    let silence = service.silence(id).await?;
    Ok(Json(GettableSilence::new(silence, model::now())))
}

/// Expire a silence now.
#[utoipa::path(delete, path = "/api/v2/silence/{id}", tag = "alertmanager",
    params(("id" = uuid::Uuid, Path, description = "Silence id")),
    responses(
        (status = 200, description = "Expired"),
        (status = 404, description = "No such silence", body = ErrorBody),
    ))]
pub(super) async fn expire(
    State(service): State<AlertService>,
    SilenceId(id): SilenceId,
    Caller(caller): Caller,
) -> Result<(), ApiError> {
    service.expire_silence(id, caller).await?;
    Ok(())
}

/// A silence's audit trail.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct SilenceActionList {
    /// Oldest first.
    pub actions: Vec<SilenceAction>,
}

/// Who created, changed and expired a silence, when, and what it was then.
#[utoipa::path(get, path = "/api/v1/silences/{id}/actions", tag = "alertmanager",
    params(("id" = uuid::Uuid, Path, description = "Silence id")),
    responses(
        (status = 200, description = "Every action, oldest first", body = SilenceActionList),
        (status = 404, description = "No such silence", body = ErrorBody),
    ))]
pub(super) async fn actions(
    State(service): State<AlertService>,
    SilenceId(id): SilenceId,
) -> Result<Json<SilenceActionList>, ApiError> {
    Ok(Json(SilenceActionList {
        actions: service.silence_actions(id).await?,
    }))
}
