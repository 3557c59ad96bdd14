//! The Alertmanager API v2 subset rule engines, amtool and dashboards use: `POST`/`GET /api/v2/alerts`,
//! `GET /api/v2/alerts/groups`, `GET /api/v2/receivers`, `GET /api/v2/status`.

use std::collections::BTreeMap;

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use crate::error::Error;
use crate::model::{Alert, Status};
use crate::rule_engines::{GENERATOR_URL, PostableAlert, Rejection, RuleAlert};
use crate::service::AlertService;
use crate::silence::{MAX_MATCHERS, Matcher, Silence, alert_labels};
use crate::store::{Durability, OpenSelection};

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
pub(super) async fn post_alerts(
    State(service): State<AlertService>,
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
    let (alerts, rejected) = service.map_rule_alerts(parse_elements(items));
    // A rule engine sends every firing alert again each resend delay: what a crash of the database loses of
    // this request, the next resend restores.
    receive_valid(&service, alerts, rejected, caller, Durability::Resent).await
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
pub(super) struct InvalidAlert {
    /// Its index in the request's `alerts`.
    pub index: usize,
    /// Why, in a word: the `reason` of `alerting_alerts_invalid_total`.
    pub reason: String,
    /// What is wrong, naming the field.
    pub message: String,
}

/// Stores `alerts` (the valid alerts of a request) and answers: 200 when none was `rejected`, else 400 listing the
/// rejected ones in `details.invalid`, with how many were stored in `details.stored`. Committed as `durability`
/// says.
pub(super) async fn receive_valid(
    service: &AlertService,
    alerts: Vec<RuleAlert>,
    rejected: Vec<(usize, Rejection)>,
    caller: Option<String>,
    durability: Durability,
) -> Result<StatusCode, ApiError> {
    let stored = alerts.len();
    if !alerts.is_empty() {
        service.receive(alerts, caller, durability).await?;
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
pub(super) struct Receiver {
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
pub(super) struct AlertStatus {
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
pub(super) struct GettableAlert {
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
    /// `alert` in Alertmanager's form, as `kept` found it (its labels, and the silences that mute it).
    fn new(alert: Alert, kept: Kept) -> Self {
        let Kept {
            labels,
            silenced_by,
        } = kept;
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

/// Query parameters of `GET /api/v2/alerts` (and its groups), read from the query string by
/// [`AlertsParams::from_query`].
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AlertsParams {
    /// Label matcher `name="value"`, `name!="value"`, `name=~"re"` or `name!~"re"`; repeat for several (all must
    /// match).
    #[param(value_type = Option<Vec<String>>)]
    pub filter: Vec<Matcher>,
    /// Include alerts no silence mutes (default true).
    pub active: Option<bool>,
    /// Include alerts a silence mutes (default true).
    pub silenced: Option<bool>,
    /// Include inhibited alerts (accepted; no alert is inhibited).
    pub inhibited: Option<bool>,
    /// Include unprocessed alerts (accepted; every alert is processed).
    pub unprocessed: Option<bool>,
    /// Receiver name regex (accepted, ignored: the only receiver is `gomon`).
    pub receiver: Option<String>,
}

impl AlertsParams {
    /// Reads the query string; 400 naming the parameter when it is invalid.
    pub(super) fn from_query(query: Option<&str>) -> Result<AlertsParams, ApiError> {
        let mut params = AlertsParams::default();
        for (name, value) in super::extract::query_pairs(query)? {
            match name.as_str() {
                "filter" => {
                    if params.filter.len() == MAX_MATCHERS {
                        return Err(ApiError::bad_request(format!(
                            "query parameter `filter`: at most {MAX_MATCHERS} matchers"
                        )));
                    }
                    params.filter.push(Matcher::parse(&value).map_err(|error| {
                        ApiError::bad_request(format!("query parameter `filter`: {error}"))
                    })?);
                }
                "active" => params.active = Some(super::alerts::parse_param(&name, &value)?),
                "silenced" => params.silenced = Some(super::alerts::parse_param(&name, &value)?),
                "inhibited" => params.inhibited = Some(super::alerts::parse_param(&name, &value)?),
                "unprocessed" => {
                    params.unprocessed = Some(super::alerts::parse_param(&name, &value)?)
                }
                "receiver" => params.receiver = Some(value),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter `{other}`: expected filter, active, silenced, inhibited, \
                         unprocessed or receiver"
                    )));
                }
            }
        }
        Ok(params)
    }
}

/// List open alerts (Alertmanager API v2), oldest first, optionally filtered by label matchers.
#[utoipa::path(get, path = "/api/v2/alerts", tag = "alertmanager", params(AlertsParams),
    responses(
        (status = 200, description = "The open alerts", body = Vec<GettableAlert>),
        (status = 400, description = "Invalid query parameter", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ))]
pub(super) async fn get_alerts(
    State(service): State<AlertService>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    open_alerts(service, query).await
}

/// The alerts of one group: Alertmanager's dispatcher groups alerts by the route's `group_by` labels.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct AlertGroup {
    /// The group's labels: the values of its route's `group_by` labels.
    pub labels: BTreeMap<String, String>,
    /// The route's receiver; `gomon` for alerts no route takes.
    pub receiver: Receiver,
    /// The group's alerts, as `GET /api/v2/alerts` lists them.
    pub alerts: Vec<GettableAlert>,
}

/// List open alerts in groups (Alertmanager API v2), as dashboards such as Grafana's Alertmanager data source read
/// them: the alerts the query parameters keep (those of `GET /api/v2/alerts`), in a group per route that takes
/// them, its receiver and the values of its `group_by` labels; alerts no route takes in one group of receiver
/// `gomon`.
#[utoipa::path(get, path = "/api/v2/alerts/groups", tag = "alertmanager", params(AlertsParams),
    responses(
        (status = 200, description = "The open alerts, in groups", body = Vec<AlertGroup>),
        (status = 400, description = "Invalid query parameter", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ))]
pub(super) async fn get_alert_groups(
    State(service): State<AlertService>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let selection = Arc::new(Selection::new(AlertsParams::from_query(query.as_deref())?));
    let silences = service.live_silences().await?;
    let now = crate::model::now();
    let (groups, held) = grouped(&service, &selection, &silences, now).await?;
    let listing = GroupListing {
        _held: held,
        service,
        selection,
        silences,
        now,
        groups: groups.into_iter(),
        current: None,
        groups_written: 0,
        done: false,
    };
    let body = Body::from_stream(futures::stream::unfold(listing, GroupListing::chunk));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A group of `GET /api/v2/alerts/groups`: its labels and its receiver's name.
type GroupKey = (BTreeMap<String, String>, String);

/// Most bytes of alerts' JSON one grouped listing holds from its grouping pass to write them; beyond them (or
/// beyond [`HELD_ANSWERS`]) it holds ids alone and reads the alerts again as it writes them, so that memory stays
/// bounded whatever the alerts hold and however many listings overlap.
const HELD_ANSWER: usize = 4 << 20;

/// Most bytes of alerts' JSON all grouped listings hold at once (see [`HELD_ANSWER`]).
const HELD_ANSWERS: usize = 32 << 20;

/// Bytes of alerts' JSON grouped listings hold now, up to [`HELD_ANSWERS`].
static HELD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The bytes of [`HELD`] one grouped listing holds, given back when it ends or its client goes away (dropped).
#[derive(Default)]
struct Held(usize);

impl Held {
    /// Holds `bytes` more, if this listing stays within [`HELD_ANSWER`] and all within [`HELD_ANSWERS`].
    fn take(&mut self, bytes: usize) -> bool {
        use std::sync::atomic::Ordering;
        let taken = self.0 + bytes <= HELD_ANSWER
            && HELD
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                    (held + bytes <= HELD_ANSWERS).then_some(held + bytes)
                })
                .is_ok();
        if taken {
            self.0 += bytes;
        }
        taken
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD.fetch_sub(self.0, std::sync::atomic::Ordering::AcqRel);
    }
}

/// An alert of a group: its id, and its JSON while the answer's alerts fit in [`Held`] (an alert in several groups
/// shares one copy).
type Member = (uuid::Uuid, Option<Bytes>);

/// The open alerts `selection` keeps, by group (see [`crate::notify::policy::Policy::api_groups`]). One pass over
/// the open alerts, a page at a time; each kept alert is written as JSON then, and read again later only when the
/// JSON outgrows what [`Held`] may hold.
async fn grouped(
    service: &AlertService,
    selection: &Arc<Selection>,
    silences: &Arc<Vec<Silence>>,
    now: DateTime<Utc>,
) -> Result<(BTreeMap<GroupKey, Vec<Member>>, Held), ApiError> {
    let policy = service.policy();
    let mut groups: BTreeMap<GroupKey, Vec<Member>> = BTreeMap::new();
    let mut held = Some(Held::default());
    let mut after = None;
    loop {
        let read = Page::read(service, after, &selection.stored).await?;
        after = read.cursor();
        let (page, last_page) = (read.alerts, read.last);
        let (selection, silences, policy) = (selection.clone(), silences.clone(), policy.clone());
        let holding = held.is_some();
        // Matching costs CPU in proportion to alerts times matchers and routes: it runs on a blocking thread.
        let (placed, still_held) = tokio::task::spawn_blocking(move || {
            // The page's kept alerts in one buffer, each member a slice of it: no allocation per alert.
            let mut buffer = Vec::new();
            let mut placed = Vec::new();
            for alert in page {
                let Some(kept) = selection.keeps(&alert, &silences, now) else {
                    continue;
                };
                let mut groups = policy
                    .as_ref()
                    .map(|policy| policy.api_groups(&alert))
                    .unwrap_or_default();
                if groups.is_empty() {
                    groups.push((Receiver::gomon().name, BTreeMap::new()));
                }
                let id = alert.id;
                let mut json = None;
                if let Some(bytes) = held.as_mut() {
                    let start = buffer.len();
                    if write_alert(alert, kept, &mut buffer) && bytes.take(buffer.len() - start) {
                        json = Some(start..buffer.len());
                    } else {
                        buffer.truncate(start);
                        held = None;
                    }
                }
                for (receiver, labels) in groups {
                    placed.push(((labels, receiver), (id, json.clone())));
                }
            }
            let buffer = Bytes::from(buffer);
            let placed: Vec<(GroupKey, Member)> = placed
                .into_iter()
                .map(|(key, (id, json))| (key, (id, json.map(|range| buffer.slice(range)))))
                .collect();
            (placed, held)
        })
        .await
        .map_err(|_| ApiError::from(Error::Internal("grouping alerts failed".into())))?;
        held = still_held;
        for (key, member) in placed {
            groups.entry(key).or_default().push(member);
        }
        if holding && held.is_none() {
            // Over the bound: ids alone from here on.
            for member in groups.values_mut().flatten() {
                member.1 = None;
            }
        }
        if last_page {
            return Ok((groups, held.unwrap_or_default()));
        }
    }
}

/// Where the streamed grouped listing is: the groups left, and the alerts of the current group left to write.
struct GroupListing {
    /// What the alerts' JSON held counts against [`HELD_ANSWERS`], until the answer ends.
    _held: Held,
    service: AlertService,
    selection: Arc<Selection>,
    silences: Arc<Vec<Silence>>,
    now: DateTime<Utc>,
    groups: std::collections::btree_map::IntoIter<GroupKey, Vec<Member>>,
    /// The alerts of the group being written not yet written, and how many of its alerts were.
    current: Option<(std::vec::IntoIter<Member>, usize)>,
    groups_written: usize,
    done: bool,
}

impl GroupListing {
    /// The next chunk of the answer: a group's opening, a page of its alerts (as the grouping pass wrote them, or
    /// read again, in their state now, when the answer was too large to hold), or the end. A database failure part
    /// way cuts the answer, as for `GET /api/v2/alerts`.
    async fn chunk(mut self) -> Option<(std::io::Result<Bytes>, GroupListing)> {
        if self.done {
            return None;
        }
        let mut out = Vec::new();
        let Some((members, written)) = self.current.as_mut() else {
            match self.groups.next() {
                Some(((labels, receiver), members)) => {
                    out.push(if self.groups_written == 0 { b'[' } else { b',' });
                    let opening =
                        serde_json::json!({"labels": labels, "receiver": {"name": receiver}});
                    let opening = opening.to_string();
                    // `{"labels":…,"receiver":…}` opened for its alerts.
                    out.extend_from_slice(&opening.as_bytes()[..opening.len() - 1]);
                    out.extend_from_slice(br#","alerts":["#);
                    self.groups_written += 1;
                    self.current = Some((members.into_iter(), 0));
                }
                None => {
                    out.extend_from_slice(if self.groups_written == 0 {
                        b"[]"
                    } else {
                        b"]"
                    });
                    self.done = true;
                }
            }
            return Some((Ok(Bytes::from(out)), self));
        };
        let page: Vec<Member> = members.by_ref().take(PAGE as usize).collect();
        if page.is_empty() {
            self.current = None;
            return Some((Ok(Bytes::from_static(b"]}")), self));
        }
        let mut ids = Vec::new();
        for (id, json) in page {
            match json {
                Some(json) => {
                    if *written > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(&json);
                    *written += 1;
                }
                None => ids.push(id),
            }
        }
        if ids.is_empty() {
            return Some((Ok(Bytes::from(out)), self));
        }
        let alerts = match self.service.get_many(&ids).await {
            Ok(alerts) => alerts,
            Err(error) => {
                tracing::warn!(%error, "listing alert groups failed part way; the answer is cut");
                self.done = true;
                return Some((Err(std::io::Error::other(error.to_string())), self));
            }
        };
        let (selection, silences, now, before) = (
            self.selection.clone(),
            self.silences.clone(),
            self.now,
            *written,
        );
        let Ok((items, now_written)) = tokio::task::spawn_blocking(move || {
            let written = selection.write(alerts, &silences, now, before, &mut out);
            (out, written)
        })
        .await
        else {
            self.done = true;
            return Some((Err(std::io::Error::other("matching alerts failed")), self));
        };
        *written = now_written;
        Some((Ok(Bytes::from(items)), self))
    }
}

/// List the receivers (Alertmanager API v2): GoMon is the only one.
#[utoipa::path(get, path = "/api/v2/receivers", tag = "alertmanager",
    responses((status = 200, description = "The receivers", body = Vec<Receiver>)))]
pub(super) async fn receivers() -> Json<Vec<Receiver>> {
    Json(vec![Receiver::gomon()])
}

/// Open alerts read from the store per page of a listing: memory stays bounded however many alerts are open.
const PAGE: u32 = 1000;

/// A page of a listing of the open alerts: up to [`PAGE`] of them, and whether it is the last.
struct Page {
    alerts: Vec<Alert>,
    last: bool,
}

impl Page {
    /// The page of the open alerts `selection` reads after `after`. One alert more than the page is asked for and
    /// dropped, so that a full page says whether any follow: a listing whose alerts fill its last page exactly is
    /// not read again to find nothing (each page of a filtered listing reads every alert the filter selects).
    async fn read(
        service: &AlertService,
        after: Option<(DateTime<Utc>, uuid::Uuid)>,
        selection: &OpenSelection,
    ) -> crate::error::Result<Page> {
        let mut alerts = service.open_page(after, selection, PAGE + 1).await?;
        let last = alerts.len() <= PAGE as usize;
        alerts.truncate(PAGE as usize);
        Ok(Page { alerts, last })
    }

    /// The cursor after this page's last alert.
    fn cursor(&self) -> Option<(DateTime<Utc>, uuid::Uuid)> {
        self.alerts.last().map(|alert| (alert.created_at, alert.id))
    }
}

/// What `GET /api/v2/alerts` (and its groups) keeps: the `filter` matchers, and whether muted and unmuted alerts
/// are wanted.
struct Selection {
    matchers: Vec<Matcher>,
    /// What every kept alert stores (its equality matchers), which the database selects by: the listing then
    /// reads only the alerts that may match, not every open alert.
    stored: OpenSelection,
    active: bool,
    silenced: bool,
}

impl Selection {
    /// What `params` keep: alerts matching every `filter`, muted or not as `active` and `silenced` say.
    fn new(params: AlertsParams) -> Selection {
        // `name="value"` keeps exactly the alerts whose stored labels hold it: but for `alertname`, which an
        // alert without one takes from its title (see `alert_labels`), and for an empty value, which an alert
        // without the label matches too.
        let equal = || {
            params
                .filter
                .iter()
                .filter(|m| m.is_equal && !m.is_regex && !m.value.is_empty())
        };
        let stored = OpenSelection {
            labels: equal()
                .filter(|m| m.name != "alertname")
                .map(|m| (m.name.clone(), m.value.clone()))
                .collect(),
            alertname: equal()
                .find(|m| m.name == "alertname")
                .map(|m| m.value.clone()),
        };
        Selection {
            stored,
            matchers: params.filter,
            active: params.active.unwrap_or(true),
            silenced: params.silenced.unwrap_or(true),
        }
    }

    /// Whether this selection keeps `alert` (open, matching, muted or not as wanted): its labels and the ids of the
    /// silences that mute it.
    fn keeps(&self, alert: &Alert, silences: &[Silence], now: DateTime<Utc>) -> Option<Kept> {
        if alert.status == Status::Resolved {
            return None;
        }
        let labels = alert_labels(alert);
        if !self.matchers.iter().all(|m| m.matches(&labels)) {
            return None;
        }
        let silenced_by: Vec<String> = silences
            .iter()
            .filter(|silence| silence.mutes(&labels, now))
            .map(|silence| silence.id.to_string())
            .collect();
        let muted = !silenced_by.is_empty();
        ((muted && self.silenced) || (!muted && self.active)).then_some(Kept {
            labels,
            silenced_by,
        })
    }

    /// Writes the alerts of `page` this selection keeps to `out` as JSON array elements, each preceded by a comma
    /// unless it is the first of the whole answer (`written` counts those written before). Returns the new count.
    fn write(
        &self,
        page: Vec<Alert>,
        silences: &[Silence],
        now: DateTime<Utc>,
        mut written: usize,
        out: &mut Vec<u8>,
    ) -> usize {
        for alert in page {
            let Some(kept) = self.keeps(&alert, silences, now) else {
                continue;
            };
            if written > 0 {
                out.push(b',');
            }
            if write_alert(alert, kept, out) {
                written += 1;
            }
        }
        written
    }
}

/// What a listing found of an alert it keeps: the labels its matchers saw, and the silences that mute it.
struct Kept {
    labels: BTreeMap<String, String>,
    silenced_by: Vec<String>,
}

/// Appends `alert` to `out` as `GET /api/v2/alerts` lists it; whether it was written (a GettableAlert is strings
/// and string maps: it always serializes).
fn write_alert(alert: Alert, kept: Kept, out: &mut Vec<u8>) -> bool {
    serde_json::to_writer(out, &GettableAlert::new(alert, kept)).is_ok()
}

/// Where the streamed listing is.
struct Listing {
    service: AlertService,
    selection: Arc<Selection>,
    silences: Arc<Vec<Silence>>,
    now: DateTime<Utc>,
    /// The page read but not yet written (the first is read before the answer starts, so that a database outage
    /// is a 503 rather than a cut answer).
    next: Option<Page>,
    written: usize,
    /// Whether the first chunk went out.
    opened: bool,
    done: bool,
    /// The last alert written or skipped: the next page starts after it.
    cursor: Option<(DateTime<Utc>, uuid::Uuid)>,
}

impl Listing {
    /// The next chunk of the answer, or `None` once it is complete. A database failure after the answer started
    /// ends it with an error, which cuts the connection: the client sees an incomplete answer, never a short one.
    async fn chunk(mut self) -> Option<(std::io::Result<Bytes>, Listing)> {
        if self.done {
            return None;
        }
        let page = match self.next.take() {
            Some(page) => page,
            None => match Page::read(&self.service, self.after(), &self.selection.stored).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "listing open alerts failed part way; the answer is cut");
                    self.done = true;
                    return Some((Err(std::io::Error::other(error.to_string())), self));
                }
            },
        };
        let (cursor, last_page) = (page.cursor(), page.last);
        let page = page.alerts;
        let (selection, silences, now, before) = (
            self.selection.clone(),
            self.silences.clone(),
            self.now,
            self.written,
        );
        // Matching costs CPU in proportion to alerts times matchers: it runs on a blocking thread.
        let written = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let written = selection.write(page, &silences, now, before, &mut out);
            (out, written)
        })
        .await;
        let Ok((items, written)) = written else {
            self.done = true;
            return Some((Err(std::io::Error::other("matching alerts failed")), self));
        };
        let mut chunk = Vec::with_capacity(items.len() + 2);
        if !self.opened {
            chunk.push(b'[');
        }
        self.opened = true;
        chunk.extend_from_slice(&items);
        self.written = written;
        self.cursor = cursor.or(self.cursor);
        if last_page {
            self.done = true;
            chunk.push(b']');
        }
        Some((Ok(Bytes::from(chunk)), self))
    }

    fn after(&self) -> Option<(DateTime<Utc>, uuid::Uuid)> {
        self.cursor
    }
}

/// Answers the open alerts the query of `GET /api/v2/alerts` keeps, oldest first, as a JSON array. The answer is streamed a page of alerts at a time, so its memory
/// is bounded whatever the number of open alerts; matching runs on a blocking thread, so that a heavy filter never
/// holds an async worker.
async fn open_alerts(service: AlertService, query: Option<String>) -> Result<Response, ApiError> {
    let selection = Arc::new(Selection::new(AlertsParams::from_query(query.as_deref())?));
    let silences = service.live_silences().await?;
    let first = Page::read(&service, None, &selection.stored).await?;
    let listing = Listing {
        service,
        selection,
        silences,
        now: crate::model::now(),
        next: Some(first),
        written: 0,
        opened: false,
        done: false,
        cursor: None,
    };
    let body = Body::from_stream(futures::stream::unfold(listing, Listing::chunk));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Cluster state: GoMon does not cluster.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct ClusterStatus {
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
pub(super) struct VersionInfo {
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
pub(super) struct ConfigText {
    /// What of GoMon's configuration maps onto Alertmanager's, as Alertmanager YAML.
    pub original: String,
}

/// GoMon's configuration in Alertmanager's terms: `global.resolve_timeout` is `alerting.alertmanager.resolve_timeout`,
/// and one route to one receiver, `gomon`; the mapping of severities and what is notified follow as comments, and
/// what does not apply is said so. Valid Alertmanager configuration, so that `amtool config routes` reads it.
pub(super) fn config_yaml(service: &AlertService) -> String {
    let config = service.alertmanager();
    let severities: Vec<String> = config
        .severities
        .iter()
        .map(|(label, severity)| format!("{label}: {severity}"))
        .collect();
    let notified = match service.policy() {
        Some(policy) => {
            let notified: Vec<&str> = policy.severities().iter().map(|s| s.as_str()).collect();
            let receivers: Vec<&str> = policy.receivers().iter().map(|r| r.name.as_str()).collect();
            format!(
                "to receivers {} (alerting.notify, else alerting.slack): severities {}",
                receivers.join(", "),
                notified.join(", ")
            )
        }
        None => "nowhere: no receiver configured (alerting.notify or alerting.slack)".into(),
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
         # Grouping, repeats and escalation are set per route in alerting.notify.routes (group_by, group_wait,\n\
         # group_interval, repeat_interval, escalation); GET /api/v2/alerts/groups groups by each route's group_by.\n\
         # Not applicable: inhibit_rules (no alert inhibits another), receivers other than GoMon itself, templates.\n\
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
pub(super) struct AlertmanagerStatus {
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
pub(super) async fn status(State(state): State<AppState>) -> Json<AlertmanagerStatus> {
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
            original: config_yaml(&state.service),
        },
        uptime: state.started,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One listing holds at most [`HELD_ANSWER`], all of them at most [`HELD_ANSWERS`], and what a listing held is
    /// given back when it ends. (No other test of this binary holds any.)
    #[test]
    fn held_answers_are_bounded_per_listing_and_in_all() {
        let mut one = Held::default();
        assert!(one.take(HELD_ANSWER - 1));
        assert!(one.take(1));
        assert!(!one.take(1), "over one listing's bound");
        let mut others: Vec<Held> = Vec::new();
        while others.len() * HELD_ANSWER + HELD_ANSWER < HELD_ANSWERS {
            let mut held = Held::default();
            assert!(held.take(HELD_ANSWER));
            others.push(held);
        }
        let mut last = Held::default();
        assert!(!last.take(1), "over the bound of all listings");
        drop(one);
        assert!(last.take(HELD_ANSWER), "given back when a listing ends");
    }
}
