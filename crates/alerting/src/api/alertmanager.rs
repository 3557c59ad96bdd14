//! The Alertmanager API v2 subset rule engines, amtool and dashboards use: `POST`/`GET /api/v2/alerts`,
//! `GET /api/v2/alerts/groups`, `GET /api/v2/receivers`, `GET /api/v2/status`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use crate::error::Error;
use crate::model::{Alert, AlertFilter, Status};
use crate::rule_engines::{GENERATOR_URL, PostableAlert, Rejection, RuleAlert};
use crate::service::Alerting;
use crate::silence::{MAX_MATCHERS, Matcher, alert_labels};

/// Receive alerts from Prometheus, vmalert or amtool (Alertmanager API v2). Every valid alert is stored (all of
/// them together, or none when the database fails); invalid ones are listed in a 400 answer, as Alertmanager does,
/// so that one odd alert never costs the others of its batch (rule engines do not resend on a 4xx).
#[utoipa::path(post, path = "/api/v2/alerts", tag = "alertmanager", request_body = Vec<PostableAlert>,
    responses(
        (status = 200, description = "Every alert applied"),
        (status = 400, description = "Malformed JSON, or some alerts invalid: the valid ones are stored, \
            `details.invalid` lists the others (index, reason, message)", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 503, description = "Database unavailable; nothing stored", body = ErrorBody),
    ))]
pub async fn post_alerts(
    State(core): State<Alerting>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<Box<serde_json::value::RawValue>>,
) -> Result<StatusCode, ApiError> {
    // Each element is read straight from the body's text, with no JSON tree built first.
    let items: Vec<&serde_json::value::RawValue> =
        serde_json::from_str(body.get()).map_err(|_| {
            ApiError::bad_request(
                "expected a JSON array of alerts ({labels, annotations, startsAt, endsAt, generatorURL})",
            )
        })?;
    let (alerts, rejected) = core.map_rule_alerts(parse_elements(items));
    receive_valid(&core, alerts, rejected, caller).await
}

/// Parses each element of a posted `alerts` array as `T`; one that does not parse is rejected as `malformed`,
/// naming its field.
pub(super) fn parse_elements<'de, D, T>(items: Vec<D>) -> Vec<Result<T, Rejection>>
where
    D: serde::Deserializer<'de, Error = serde_json::Error>,
    T: serde::Deserialize<'de>,
{
    items
        .into_iter()
        .map(|item| {
            serde_path_to_error::deserialize::<_, T>(item).map_err(|error| {
                let path = error.path().to_string();
                let message = if path == "." {
                    error.inner().to_string()
                } else {
                    format!("{path}: {}", error.inner())
                };
                Rejection::new("malformed", message)
            })
        })
        .collect()
}

/// One alert of a request that was not stored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InvalidAlert {
    /// Its index in the request's `alerts`.
    pub index: usize,
    /// Why, in a word: the `reason` of `alerting_alerts_invalid_total`.
    pub reason: String,
    /// What is wrong, naming the field.
    pub message: String,
}

/// Stores `alerts` (the valid alerts of a request) and answers: 200 when none was `rejected`, else 400 listing the
/// rejected ones in `details.invalid`, with how many were stored in `details.stored`.
pub(super) async fn receive_valid(
    core: &Alerting,
    alerts: Vec<RuleAlert>,
    rejected: Vec<(usize, Rejection)>,
    caller: Option<String>,
) -> Result<StatusCode, ApiError> {
    let stored = alerts.len();
    if !alerts.is_empty() {
        core.receive(alerts, caller).await?;
    }
    if rejected.is_empty() {
        return Ok(StatusCode::OK);
    }
    let summary: Vec<String> = rejected
        .iter()
        .take(5)
        .map(|(index, rejection)| format!("alerts[{index}]: {}", rejection.message))
        .collect();
    let more = if rejected.len() > summary.len() {
        format!(" (and {} more)", rejected.len() - summary.len())
    } else {
        String::new()
    };
    let invalid: Vec<InvalidAlert> = rejected
        .into_iter()
        .map(|(index, rejection)| InvalidAlert {
            index,
            reason: rejection.reason.to_owned(),
            message: rejection.message,
        })
        .collect();
    Err(ApiError::with_details(
        StatusCode::BAD_REQUEST,
        format!(
            "{} invalid alert(s) not stored, {stored} stored: {}{more}",
            invalid.len(),
            summary.join("; ")
        ),
        serde_json::json!({ "invalid": invalid, "stored": stored }),
    ))
}

/// An invalid silence is a 400 naming its field, as Alertmanager answers.
pub(super) fn mapping_error(error: Error) -> ApiError {
    match error {
        Error::Invalid { field, message } => ApiError::bad_request(format!("{field}: {message}")),
        other => ApiError::from(other),
    }
}

/// A receiver, as Alertmanager names them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Receiver {
    /// Its name: always `gomon`.
    pub name: String,
}

impl Receiver {
    /// GoMon itself, the only receiver.
    fn gomon() -> Self {
        Receiver {
            name: "gomon".into(),
        }
    }
}

/// Where an alert is, in Alertmanager's terms.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertStatus {
    /// `active`, or `suppressed` when a silence mutes it.
    pub state: String,
    /// Ids of the silences that mute it.
    pub silenced_by: Vec<String>,
    /// Ids of the alerts that inhibit it (none).
    pub inhibited_by: Vec<String>,
}

/// An open alert as the Alertmanager API returns it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GettableAlert {
    /// The label set (with `alertname` set to the title for alerts that have none).
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// When it was created.
    pub starts_at: DateTime<Utc>,
    /// When it ends unless sent again (alerts of the Alertmanager API); otherwise absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<DateTime<Utc>>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// GoMon's fingerprint of the alert.
    pub fingerprint: String,
    /// Always `[{"name": "gomon"}]`.
    pub receivers: Vec<Receiver>,
    /// Its state.
    pub status: AlertStatus,
    /// Link back to the rule that raised it, if known.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

impl GettableAlert {
    /// `alert` in Alertmanager's form; `silenced_by` the ids of the silences that mute it.
    fn new(alert: Alert, silenced_by: Vec<String>) -> Self {
        let labels = alert_labels(&alert);
        let mut annotations = alert.annotations;
        let generator_url = annotations.remove(GENERATOR_URL).unwrap_or_default();
        let state = if silenced_by.is_empty() {
            "active"
        } else {
            "suppressed"
        };
        GettableAlert {
            labels,
            annotations,
            starts_at: alert.created_at,
            ends_at: alert.ends_at,
            updated_at: alert.updated_at,
            fingerprint: alert.fingerprint,
            receivers: vec![Receiver::gomon()],
            status: AlertStatus {
                state: state.into(),
                silenced_by,
                inhibited_by: Vec::new(),
            },
            generator_url,
        }
    }
}

/// Query parameters of `GET /api/v2/alerts`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AlertsParams {
    /// Label matcher `name="value"`, `name!="value"`, `name=~"re"` or `name!~"re"`; repeat for several (all must
    /// match).
    filter: Option<Vec<String>>,
    /// Include alerts no silence mutes (default true).
    active: Option<bool>,
    /// Include alerts a silence mutes (default true).
    silenced: Option<bool>,
    /// Include inhibited alerts (accepted; no alert is inhibited).
    inhibited: Option<bool>,
    /// Include unprocessed alerts (accepted; every alert is processed).
    unprocessed: Option<bool>,
    /// Receiver name regex (accepted, ignored: the only receiver is `gomon`).
    receiver: Option<String>,
}

/// List open alerts (Alertmanager API v2), oldest first, optionally filtered by label matchers.
#[utoipa::path(get, path = "/api/v2/alerts", tag = "alertmanager", params(AlertsParams),
    responses(
        (status = 200, description = "The open alerts", body = Vec<GettableAlert>),
        (status = 400, description = "Invalid query parameter", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ))]
pub async fn get_alerts(
    State(core): State<Alerting>,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<GettableAlert>>, ApiError> {
    Ok(Json(open_alerts(&core, query).await?))
}

/// The alerts of one group: Alertmanager's dispatcher groups alerts by the route's `group_by` labels.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertGroup {
    /// The group's labels: none, as GoMon's route groups by nothing.
    pub labels: BTreeMap<String, String>,
    /// `{"name": "gomon"}`.
    pub receiver: Receiver,
    /// The group's alerts, as `GET /api/v2/alerts` lists them.
    pub alerts: Vec<GettableAlert>,
}

/// List open alerts in groups (Alertmanager API v2), as dashboards such as Grafana's Alertmanager data source read
/// them: one group holding every alert that the query parameters keep (those of `GET /api/v2/alerts`), or none.
#[utoipa::path(get, path = "/api/v2/alerts/groups", tag = "alertmanager", params(AlertsParams),
    responses(
        (status = 200, description = "The open alerts, in one group", body = Vec<AlertGroup>),
        (status = 400, description = "Invalid query parameter", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ))]
pub async fn get_alert_groups(
    State(core): State<Alerting>,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<AlertGroup>>, ApiError> {
    let alerts = open_alerts(&core, query).await?;
    if alerts.is_empty() {
        return Ok(Json(Vec::new()));
    }
    Ok(Json(vec![AlertGroup {
        labels: BTreeMap::new(),
        receiver: Receiver::gomon(),
        alerts,
    }]))
}

/// List the receivers (Alertmanager API v2): GoMon is the only one.
#[utoipa::path(get, path = "/api/v2/receivers", tag = "alertmanager",
    responses((status = 200, description = "The receivers", body = Vec<Receiver>)))]
pub async fn receivers() -> Json<Vec<Receiver>> {
    Json(vec![Receiver::gomon()])
}

/// The open alerts the query of `GET /api/v2/alerts` (or its groups) keeps, oldest first. The alerts and the live
/// silences are read first; matching them, which costs CPU in proportion to alerts times matchers, runs on a
/// blocking thread so that it never holds an async worker.
async fn open_alerts(
    core: &Alerting,
    query: Option<String>,
) -> Result<Vec<GettableAlert>, ApiError> {
    let mut matchers = Vec::new();
    let (mut active, mut silenced) = (true, true);
    for (name, value) in super::extract::query_pairs(query.as_deref())? {
        match name.as_str() {
            "filter" => {
                if matchers.len() == MAX_MATCHERS {
                    return Err(ApiError::bad_request(format!(
                        "query parameter `filter`: at most {MAX_MATCHERS} matchers"
                    )));
                }
                matchers.push(Matcher::parse(&value).map_err(|error| {
                    ApiError::bad_request(format!("query parameter `filter`: {error}"))
                })?);
            }
            "active" => active = super::alerts::parse_param(&name, &value)?,
            "silenced" => silenced = super::alerts::parse_param(&name, &value)?,
            "inhibited" | "unprocessed" => {
                super::alerts::parse_param::<bool>(&name, &value)?;
            }
            "receiver" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`: expected filter, active, silenced, inhibited, \
                     unprocessed or receiver"
                )));
            }
        }
    }
    let mut alerts = Vec::new();
    for status in [Status::Firing, Status::Acknowledged] {
        let mut filter = AlertFilter {
            status: Some(status),
            limit: super::alerts::MAX_LIMIT,
            ..AlertFilter::default()
        };
        loop {
            let page = core.list(&filter).await?;
            alerts.extend(page.alerts);
            match page.next_cursor {
                Some(cursor) => filter.after = Some(super::alerts::parse_param("cursor", &cursor)?),
                None => break,
            }
        }
    }
    let silences = core.live_silences().await?;
    let now = crate::model::now();
    let kept = tokio::task::spawn_blocking(move || {
        let mut open = Vec::new();
        for alert in alerts {
            let labels = alert_labels(&alert);
            if !matchers.iter().all(|m| m.matches(&labels)) {
                continue;
            }
            let silenced_by: Vec<String> = silences
                .iter()
                .filter(|silence| silence.mutes(&labels, now))
                .map(|silence| silence.id.to_string())
                .collect();
            if (silenced_by.is_empty() && active) || (!silenced_by.is_empty() && silenced) {
                open.push(GettableAlert::new(alert, silenced_by));
            }
        }
        open.sort_by_key(|alert| alert.starts_at);
        open
    })
    .await
    .map_err(|error| ApiError::from(Error::Internal(format!("matching alerts: {error}"))))?;
    Ok(kept)
}

/// Cluster state: GoMon does not cluster.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClusterStatus {
    /// `gomon`.
    pub name: String,
    /// `disabled`.
    pub status: String,
    /// None.
    pub peers: Vec<serde_json::Value>,
}

/// Version of the service.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// GoMon's version.
    pub version: String,
    /// Empty.
    pub revision: String,
    /// Empty.
    pub branch: String,
    /// Empty.
    pub build_user: String,
    /// Empty.
    pub build_date: String,
    /// Empty.
    pub go_version: String,
}

/// The configuration, as Alertmanager shows its YAML.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfigText {
    /// What of GoMon's configuration maps onto Alertmanager's, as Alertmanager YAML.
    pub original: String,
}

/// GoMon's configuration in Alertmanager's terms: `global.resolve_timeout` is `alerting.alertmanager.resolve_timeout`,
/// and one route to one receiver, `gomon`; the mapping of severities and what is notified follow as comments, and
/// what does not apply is said so. Valid Alertmanager configuration, so that `amtool config routes` reads it.
pub fn config_yaml(core: &Alerting) -> String {
    let config = core.alertmanager();
    let severities: Vec<String> = config
        .severities
        .iter()
        .map(|(label, severity)| format!("{label}: {severity}"))
        .collect();
    let notified = match core.notified_severities() {
        Some(notified) => {
            let notified: Vec<&str> = notified.iter().map(|s| s.as_str()).collect();
            format!(
                "to Slack (alerting.slack): severities {}",
                notified.join(", ")
            )
        }
        None => "nowhere: no Slack destination configured (alerting.slack)".into(),
    };
    let source = config
        .source
        .as_deref()
        .unwrap_or("vmalert or prometheus from the generator URL, else alertmanager");
    format!(
        "# GoMon alerting, in Alertmanager's terms (alerting.alertmanager).\n\
         # severity label -> GoMon severity: {{{}}}; otherwise {}.\n\
         # Source of the alerts: {source}. Alerts past their endsAt are resolved every {}.\n\
         # Notified: {notified}; a silenced alert is stored but not notified.\n\
         # Not applicable: inhibit_rules (no alert inhibits another), grouping and repeat intervals (every alert is\n\
         # stored on its own and each change notified once), receivers other than GoMon itself, templates.\n\
         global:\n  resolve_timeout: {}\n\
         route:\n  receiver: gomon\n\
         receivers:\n  - name: gomon\n",
        severities.join(", "),
        config.default_severity,
        go_duration(config.sweep_interval),
        go_duration(config.resolve_timeout),
    )
}

/// `duration` as Alertmanager writes one: `5m`, `90s`, `1500ms`.
fn go_duration(duration: std::time::Duration) -> String {
    let millis = duration.as_millis();
    match millis {
        m if m % 3_600_000 == 0 => format!("{}h", m / 3_600_000),
        m if m % 60_000 == 0 => format!("{}m", m / 60_000),
        m if m % 1_000 == 0 => format!("{}s", m / 1_000),
        m => format!("{m}ms"),
    }
}

/// What `GET /api/v2/status` answers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerStatus {
    /// Cluster state.
    pub cluster: ClusterStatus,
    /// Version.
    pub version_info: VersionInfo,
    /// Configuration.
    pub config: ConfigText,
    /// When the API started.
    pub uptime: DateTime<Utc>,
}

/// Status of the Alertmanager API (enough for `amtool config show` and clients that probe it).
#[utoipa::path(get, path = "/api/v2/status", tag = "alertmanager",
    responses((status = 200, description = "Status", body = AlertmanagerStatus)))]
pub async fn status(State(state): State<AppState>) -> Json<AlertmanagerStatus> {
    Json(AlertmanagerStatus {
        cluster: ClusterStatus {
            name: "gomon".into(),
            status: "disabled".into(),
            peers: Vec::new(),
        },
        version_info: VersionInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            revision: String::new(),
            branch: String::new(),
            build_user: String::new(),
            build_date: String::new(),
            go_version: String::new(),
        },
        config: ConfigText {
            original: config_yaml(&state.core),
        },
        uptime: state.started,
    })
}
