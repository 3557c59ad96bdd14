//! The alert model and its lifecycle rules: pure data and pure functions, no I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{Error, Result};

/// Longest `title`, in characters.
pub const MAX_TITLE: usize = 255;
/// Longest `source`, in characters.
pub const MAX_SOURCE: usize = 50;
/// Longest `namespace`, in characters.
pub const MAX_NAMESPACE: usize = 100;
/// Longest actor name (`acknowledged_by`, `assigned_to`), in characters.
pub const MAX_ACTOR: usize = 100;
/// Longest `jaeger_trace_id`, in characters.
pub const MAX_TRACE_ID: usize = 255;

/// How urgent an alert is: P1 (page now) to P4 (informational).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
)]
pub enum Severity {
    /// Critical: someone acts now.
    P1,
    /// High.
    P2,
    /// Medium.
    #[default]
    P3,
    /// Low, informational.
    P4,
}

impl Severity {
    /// Every severity, most urgent first.
    pub const ALL: [Severity; 4] = [Severity::P1, Severity::P2, Severity::P3, Severity::P4];

    /// The name used in JSON, SQL and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::P1 => "P1",
            Severity::P2 => "P2",
            Severity::P3 => "P3",
            Severity::P4 => "P4",
        }
    }
}

/// Where an alert is in its lifecycle: firing -> acknowledged -> resolved, or firing -> resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Open and nobody has taken it.
    Firing,
    /// Open and someone is on it.
    Acknowledged,
    /// Closed.
    Resolved,
}

impl Status {
    /// The name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Acknowledged => "acknowledged",
            Status::Resolved => "resolved",
        }
    }
}

macro_rules! parse_by_name {
    ($type:ty, $what:literal, [$($variant:expr),+]) => {
        impl FromStr for $type {
            type Err = String;
            fn from_str(text: &str) -> std::result::Result<Self, String> {
                [$($variant),+]
                    .into_iter()
                    .find(|value| value.as_str() == text)
                    .ok_or_else(|| {
                        let names: Vec<&str> = [$($variant.as_str()),+].to_vec();
                        format!("unknown {} {text:?}, expected one of {}", $what, names.join(", "))
                    })
            }
        }
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
parse_by_name!(
    Severity,
    "severity",
    [Severity::P1, Severity::P2, Severity::P3, Severity::P4]
);
parse_by_name!(
    Status,
    "status",
    [Status::Firing, Status::Acknowledged, Status::Resolved]
);

/// A stored alert. Field names are the columns of the `alerts_active` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    /// Unique id.
    pub id: Uuid,
    /// The same for every alert of one fingerprint, across re-fires.
    pub alert_group_id: Uuid,
    /// Hash that identifies repeats of the same alert: of (source, namespace, title, labels), or of the label set
    /// alone for alerts from rule engines.
    pub fingerprint: String,
    /// What raised it (`api`, `kubernetes`, `vmalert`, ...).
    pub source: String,
    /// How urgent it is.
    pub severity: Severity,
    /// Where it is in its lifecycle.
    pub status: Status,
    /// One line saying what is wrong.
    pub title: String,
    /// More detail.
    pub description: Option<String>,
    /// Kubernetes namespace concerned, if any.
    pub namespace: Option<String>,
    /// Identifying labels (part of the fingerprint).
    pub labels: BTreeMap<String, String>,
    /// Non-identifying annotations.
    pub annotations: BTreeMap<String, String>,
    /// Incident this alert belongs to, if any.
    pub incident_id: Option<Uuid>,
    /// Trace that created or concerns it.
    pub jaeger_trace_id: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was acknowledged.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Who owns it.
    pub assigned_to: Option<String>,
    /// When it ends unless its rule engine sends it again (alerts of the Alertmanager API); null otherwise.
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
}

/// An alert as submitted, before it is stored.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAlert {
    /// What raised it; at most 50 characters.
    pub source: String,
    /// P1, P2, P3 or P4.
    pub severity: Severity,
    /// One line saying what is wrong; at most 255 characters.
    pub title: String,
    /// More detail.
    #[serde(default)]
    pub description: Option<String>,
    /// Kubernetes namespace; at most 100 characters.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Identifying labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Non-identifying annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Trace id, stored as `jaeger_trace_id`.
    #[serde(default, alias = "jaeger_trace_id")]
    pub trace_id: Option<String>,
    /// What identifies repeats of this alert (not part of the REST body: set by the receivers of rule engines).
    #[serde(skip)]
    pub identity: Identity,
}

/// What the fingerprint of an alert is computed over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Identity {
    /// (source, namespace, title, labels): alerts of the REST API and the pod watcher.
    #[default]
    Full,
    /// The label set alone, as Alertmanager identifies alerts: rule engines re-send the same labels while the
    /// title (from a summary that may quote a value) changes.
    LabelSet,
}

/// Current time at the precision both stores keep (microseconds), so a stored alert reads back identical.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Namespace of the v5 UUIDs that name alert groups.
const GROUP_NAMESPACE: Uuid = Uuid::from_u128(0x6c0f_5a6e_9b1d_4e0b_a4a5_2f3c_1d7e_8b90);

/// The group of the alerts with `fingerprint` (see [`Alert::alert_group_id`]): a v5 UUID of it. The store keys
/// open alerts by it, as 16 bytes are cheaper to index than the fingerprint's 64 characters.
pub fn group_id(fingerprint: &str) -> Uuid {
    Uuid::new_v5(&GROUP_NAMESPACE, fingerprint.as_bytes())
}

pub use gomon_runtime::text::truncate;

/// A NUL byte is refused in every text field: PostgreSQL keeps none in text or JSON, and SQLite would cut C strings
/// at it.
pub fn check_no_nul(field: &str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(Error::invalid(
            field,
            "must not contain a NUL byte (\\u0000)",
        ));
    }
    Ok(())
}

/// [`check_no_nul`] over the keys and values of `map`, naming the entry (`labels.<key>`).
fn check_map_no_nul(field: &str, map: &BTreeMap<String, String>) -> Result<()> {
    for (key, value) in map {
        if key.contains('\0') || value.contains('\0') {
            let key = key.replace('\0', "\\u0000");
            return Err(Error::invalid(
                &format!("{field}.{key}"),
                "must not contain a NUL byte (\\u0000)",
            ));
        }
    }
    Ok(())
}

fn check_length(field: &str, value: &str, max: usize) -> Result<()> {
    check_no_nul(field, value)?;
    let length = value.chars().count();
    if length > max {
        return Err(Error::invalid(
            field,
            format!("is {length} characters long, at most {max} are allowed"),
        ));
    }
    Ok(())
}

fn check_required(field: &str, value: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    check_length(field, value, max)
}

impl NewAlert {
    /// Checks every field, naming the first invalid one.
    pub fn validate(&self) -> Result<()> {
        check_required("source", &self.source, MAX_SOURCE)?;
        check_required("title", &self.title, MAX_TITLE)?;
        if let Some(namespace) = &self.namespace {
            check_length("namespace", namespace, MAX_NAMESPACE)?;
        }
        if let Some(trace_id) = &self.trace_id {
            check_length("trace_id", trace_id, MAX_TRACE_ID)?;
        }
        if let Some(description) = &self.description {
            check_no_nul("description", description)?;
        }
        if self.labels.keys().any(|key| key.is_empty()) {
            return Err(Error::invalid("labels", "label names must not be empty"));
        }
        check_map_no_nul("labels", &self.labels)?;
        check_map_no_nul("annotations", &self.annotations)?;
        Ok(())
    }

    /// Identity of this alert for deduplication: SHA-256 over (source, namespace, title, sorted labels), or over
    /// the sorted label set alone for [`Identity::LabelSet`].
    pub fn fingerprint(&self) -> String {
        // The JSON text of a tuple, written straight into the hash: `["labels",{...}]`, keys in order.
        let mut hasher = HashWriter(Sha256::new());
        let written = match self.identity {
            Identity::Full => serde_json::to_writer(
                &mut hasher,
                &(&self.source, &self.namespace, &self.title, &self.labels),
            ),
            Identity::LabelSet => serde_json::to_writer(&mut hasher, &("labels", &self.labels)),
        };
        // Strings and string maps always serialize, and the hash never fails to take bytes.
        debug_assert!(written.is_ok());
        to_hex(&hasher.0.finalize())
    }

    /// The alert this submission becomes, firing, created at `at`.
    pub fn into_alert(self, at: DateTime<Utc>) -> Alert {
        let fingerprint = self.fingerprint();
        Alert {
            // Time-ordered: new rows go to the right edge of the indexes on the id, instead of a random page.
            id: Uuid::now_v7(),
            alert_group_id: group_id(&fingerprint),
            fingerprint,
            source: self.source,
            severity: self.severity,
            status: Status::Firing,
            title: self.title,
            description: self.description,
            namespace: self.namespace,
            labels: self.labels,
            annotations: self.annotations,
            incident_id: None,
            jaeger_trace_id: self.trace_id,
            created_at: at,
            acknowledged_at: None,
            acknowledged_by: None,
            updated_at: at,
            resolved_at: None,
            assigned_to: None,
            ends_at: None,
        }
    }
}

/// Feeds what is written into a SHA-256.
struct HashWriter(Sha256);

/// `bytes` in lowercase hexadecimal.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    hex
}

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A change to an existing alert.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Someone takes it: firing -> acknowledged.
    Acknowledge {
        /// Who; recorded as `acknowledged_by`.
        by: Option<String>,
    },
    /// It is over: firing or acknowledged -> resolved.
    Resolve {
        /// Who resolved it.
        by: Option<String>,
        /// Why, kept in the audit trail and the notification.
        note: Option<String>,
    },
    /// Someone owns it (status unchanged; not allowed once resolved).
    Assign {
        /// New owner.
        assigned_to: String,
        /// Why, kept in the audit trail.
        note: Option<String>,
    },
}

/// One row of an alert's audit trail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// The alert concerned.
    pub alert_id: Uuid,
    /// `created`, `acknowledged`, `resolved`, `assigned` or `deleted`; by the service, `repeated` (notified
    /// again, still unacknowledged) and `escalated` (an escalation step's receivers notified).
    pub action: String,
    /// Who did it: the API token's name (the `by` of the request when the API is served without tokens), or the
    /// service itself (`expiry`, `kubernetes`). A `by` given with a token is in `details.on_behalf_of`.
    pub actor: Option<String>,
    /// What changed.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl AuditEntry {
    /// The `created` entry of `alert`, made by `actor`. The store keeps it in the alert's own row (its creation
    /// time, severity and source, and `created_by`), so that creating an alert writes one row.
    pub fn created(alert: &Alert, actor: Option<String>) -> Self {
        AuditEntry {
            alert_id: alert.id,
            action: "created".to_owned(),
            actor,
            details: serde_json::json!({"severity": alert.severity, "source": alert.source}),
            created_at: alert.created_at,
        }
    }

    /// An entry for `alert`, now.
    pub fn new(
        alert: &Alert,
        action: &str,
        actor: Option<String>,
        details: serde_json::Value,
    ) -> Self {
        AuditEntry {
            alert_id: alert.id,
            action: action.to_owned(),
            actor,
            details,
            created_at: alert.updated_at,
        }
    }
}

impl Change {
    /// The notification event this change causes.
    pub fn event(&self) -> &'static str {
        match self {
            Change::Acknowledge { .. } => "acknowledged",
            Change::Resolve { .. } => "resolved",
            Change::Assign { .. } => "assigned",
        }
    }

    /// The note that goes with the change, if any.
    pub fn note(&self) -> Option<&str> {
        match self {
            Change::Assign { note, .. } | Change::Resolve { note, .. } => note.as_deref(),
            Change::Acknowledge { .. } => None,
        }
    }

    /// Checks the change's own fields.
    pub fn validate(&self) -> Result<()> {
        match self {
            Change::Acknowledge { by } | Change::Resolve { by, .. } => {
                if let Some(by) = by {
                    check_length("by", by, MAX_ACTOR)?;
                }
            }
            Change::Assign { assigned_to, .. } => {
                check_required("assigned_to", assigned_to, MAX_ACTOR)?;
            }
        }
        if let Some(note) = self.note() {
            check_no_nul("note", note)?;
        }
        Ok(())
    }

    /// Applies the change to `alert` at `at`, or says why it is not allowed.
    ///
    /// `actor` is who makes the change: the caller's token name, or the service itself (`expiry`, `kubernetes`).
    /// It is the actor of the audit entry, and a name the change gives (`by`) is kept beside it as
    /// `on_behalf_of`, so that a token cannot record a change in someone else's name. With no actor (an API
    /// served without tokens), `by` is the actor. Returns the changed alert and its audit entry.
    pub fn apply(
        &self,
        mut alert: Alert,
        actor: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<(Alert, AuditEntry)> {
        let from = alert.status;
        let by = match self {
            Change::Acknowledge { by } | Change::Resolve { by, .. } => by.clone(),
            Change::Assign { .. } => None,
        };
        let (actor, on_behalf_of) = match actor {
            Some(actor) => (Some(actor), by),
            None => (by, None),
        };
        let (action, mut details) = match self {
            Change::Acknowledge { .. } => {
                if from != Status::Firing {
                    return Err(Error::Conflict(format!(
                        "alert {} is {from}: only a firing alert can be acknowledged",
                        alert.id
                    )));
                }
                alert.status = Status::Acknowledged;
                alert.acknowledged_at = Some(at);
                alert.acknowledged_by.clone_from(&actor);
                (
                    "acknowledged",
                    serde_json::json!({"from": from, "to": alert.status}),
                )
            }
            Change::Resolve { note, .. } => {
                if from == Status::Resolved {
                    return Err(Error::Conflict(format!(
                        "alert {} is already resolved",
                        alert.id
                    )));
                }
                alert.status = Status::Resolved;
                alert.resolved_at = Some(at);
                let mut details = serde_json::json!({"from": from, "to": alert.status});
                if let Some(note) = note {
                    details["note"] = serde_json::Value::from(note.as_str());
                }
                ("resolved", details)
            }
            Change::Assign { assigned_to, note } => {
                if from == Status::Resolved {
                    return Err(Error::Conflict(format!(
                        "alert {} is resolved: a resolved alert cannot be assigned",
                        alert.id
                    )));
                }
                let previous = alert.assigned_to.replace(assigned_to.clone());
                (
                    "assigned",
                    serde_json::json!({"assigned_to": assigned_to, "previous": previous, "note": note}),
                )
            }
        };
        if let Some(on_behalf_of) = on_behalf_of {
            details["on_behalf_of"] = serde_json::Value::String(on_behalf_of);
        }
        alert.updated_at = at;
        let entry = AuditEntry::new(&alert, action, actor, details);
        Ok((alert, entry))
    }
}

/// Where a notification is in the outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotificationStatus {
    /// Waiting for delivery (or being delivered).
    Pending,
    /// Slack accepted it.
    Sent,
    /// Given up: a permanent error after the allowed tries, or too old.
    Failed,
}

impl NotificationStatus {
    /// The name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Pending => "pending",
            NotificationStatus::Sent => "sent",
            NotificationStatus::Failed => "failed",
        }
    }
}

parse_by_name!(
    NotificationStatus,
    "notification status",
    [
        NotificationStatus::Pending,
        NotificationStatus::Sent,
        NotificationStatus::Failed
    ]
);

/// One receiver a notification goes to, and the route that chose it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The receiver's name (`alerting.notify.receivers[].name`, or `slack` for `alerting.slack`).
    pub receiver: String,
    /// The index of the route in `alerting.notify.routes`; `None` for the route `alerting.slack` stands for.
    pub route: Option<i32>,
    /// When the route notifies a new alert again while it stays firing and unacknowledged; `None` when it never
    /// does. Set on the targets of an alert's `created` notification alone (`Policy::targets`); the store writes
    /// it beside that notification's row.
    pub follow_up: Option<FollowUp>,
    /// The group the route puts the notification in; `None`: it goes alone, at once.
    pub group: Option<Group>,
}

/// The group of a notification: the notifications of one receiver with the same key go out together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The route and the values of its `group_by` labels, as `route:{namespace="payments"}`.
    pub key: String,
    /// How long the notification waits for others of its group (`group_wait`).
    pub wait: std::time::Duration,
}

impl Target {
    /// When the notification of a change at `at` to this target is due: once its group has waited.
    pub fn due_at(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let wait = self
            .group
            .as_ref()
            .and_then(|group| chrono::Duration::from_std(group.wait).ok())
            .unwrap_or_default();
        at.checked_add_signed(wait).unwrap_or(at)
    }
}

/// A route's next reminder and next escalation step of one alert, while the alert fires unacknowledged: a row of
/// `notify_followups`, due at the earlier of the two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowUp {
    /// When the route's receiver is notified again (`repeat_interval`).
    pub repeat_at: Option<DateTime<Utc>>,
    /// When the next escalation step (index `step` of the route's `escalation`) fires.
    pub escalate_at: Option<DateTime<Utc>>,
    /// The index of that escalation step.
    pub step: i32,
}

impl FollowUp {
    /// When it is due: the earlier of the two times; `None` when nothing is left to do.
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        match (self.repeat_at, self.escalate_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A notification to write to the outbox together with the alert change that causes it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewNotification {
    /// The alert concerned.
    pub alert_id: Uuid,
    /// `created`, `acknowledged`, `assigned`, `resolved`, `repeated` or `escalated`.
    pub event: &'static str,
    /// What the message is made from: `{"alert": <the alert after the change>, "actor": ..., "note": ...}`.
    pub payload: serde_json::Value,
    /// When the change happened (the delivery latency is measured from here).
    pub created_at: DateTime<Utc>,
    /// The receivers it goes to (one outbox row each), and the routes that chose them.
    pub targets: Vec<Target>,
}

impl NewNotification {
    /// The notification of `event` on `alert` (as it is after the change), by `actor`, with `note`. Made inside a
    /// traced span (a request), it records that span's `traceparent`, which its Slack delivery continues.
    pub fn new(
        alert: &Alert,
        event: &'static str,
        actor: Option<&str>,
        note: Option<&str>,
        targets: Vec<Target>,
    ) -> Self {
        let mut payload = serde_json::json!({"alert": alert, "actor": actor, "note": note});
        let trace = gomon_runtime::telemetry::inject(&tracing::Span::current());
        if let Some(traceparent) = trace.get("traceparent") {
            payload["traceparent"] = serde_json::Value::String(traceparent.clone());
        }
        NewNotification {
            alert_id: alert.id,
            event,
            payload,
            created_at: alert.updated_at,
            targets,
        }
    }
}

/// A row of the notification outbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    /// Outbox sequence number: delivery follows it for any one alert.
    pub id: i64,
    /// The alert concerned.
    pub alert_id: Uuid,
    /// `created`, `acknowledged`, `assigned`, `resolved`; `repeated` (a reminder) or `escalated` (an escalation step).
    pub event: String,
    /// pending, sent or failed.
    pub status: NotificationStatus,
    /// What the message is made from.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Delivery attempts so far.
    pub attempts: i32,
    /// When it is (or was) next due; while a dispatcher holds it, the end of its lease.
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the alert change happened.
    pub created_at: DateTime<Utc>,
    /// When Slack accepted it.
    pub sent_at: Option<DateTime<Utc>>,
    /// Channel Slack posted it in (Web API).
    pub slack_channel: Option<String>,
    /// Slack's message timestamp (Web API): follow-ups are threaded under the `created` message's.
    pub slack_ts: Option<String>,
    /// The receiver it goes to.
    pub receiver: String,
    /// The index of the route in `alerting.notify.routes` that chose the receiver; null for the route
    /// `alerting.slack` stands for.
    pub route: Option<i32>,
    /// The group it is sent with (the route and the values of its `group_by` labels); null when it goes alone.
    pub group_key: Option<String>,
}

/// Which alerts a listing returns, and which page of them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertFilter {
    /// Only alerts in this state.
    pub status: Option<Status>,
    /// Only alerts of this severity.
    pub severity: Option<Severity>,
    /// Only alerts of this namespace.
    pub namespace: Option<String>,
    /// Only alerts from this source.
    pub source: Option<String>,
    /// Only alerts carrying every one of these labels with these values.
    pub labels: Vec<(String, String)>,
    /// Only alerts whose title contains this text, ignoring ASCII case.
    pub title_contains: Option<String>,
    /// Only alerts created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only alerts created before this time.
    pub until: Option<DateTime<Utc>>,
    /// Page size.
    pub limit: u32,
    /// Alerts of the filtered list to skip.
    pub offset: u64,
    /// Resume after this alert (from a previous page's `next_cursor`).
    pub after: Option<Cursor>,
}

/// How many alerts are open, by status and severity: what `GET /api/v1/alerts/summary` answers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OpenCounts {
    /// Firing alerts by severity (`{"P1": 2}`); severities with none are absent.
    pub firing: BTreeMap<String, u64>,
    /// Acknowledged alerts by severity.
    pub acknowledged: BTreeMap<String, u64>,
}

impl OpenCounts {
    /// The counts of `rows` (status, severity, count); resolved rows are ignored.
    pub fn new(rows: &[(Status, Severity, u64)]) -> Self {
        let mut counts = Self::default();
        for (status, severity, count) in rows {
            let by_severity = match status {
                Status::Firing => &mut counts.firing,
                Status::Acknowledged => &mut counts.acknowledged,
                Status::Resolved => continue,
            };
            *by_severity.entry(severity.as_str().to_owned()).or_default() += count;
        }
        counts
    }

    /// Open alerts of `severity`, firing or acknowledged.
    pub fn open(&self, severity: Severity) -> u64 {
        [&self.firing, &self.acknowledged]
            .iter()
            .filter_map(|by_severity| by_severity.get(severity.as_str()))
            .sum()
    }
}

/// Position in the newest-first order: the last alert of a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// Creation time of that alert.
    pub created_at: DateTime<Utc>,
    /// Its id, which breaks ties.
    pub id: Uuid,
}

impl Cursor {
    /// The cursor just past `alert`.
    pub fn after(alert: &Alert) -> Self {
        Cursor {
            created_at: alert.created_at,
            id: alert.id,
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}_{}",
            self.created_at.timestamp_micros(),
            self.id.simple()
        )
    }
}

impl FromStr for Cursor {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let invalid = || format!("invalid cursor {text:?}: use the next_cursor of a previous page");
        let (micros, id) = text.split_once('_').ok_or_else(invalid)?;
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
        // Both stores keep years 1 to 9999; a cursor outside them was not made by a listing.
        if !(1..=9999).contains(&chrono::Datelike::year(&created_at)) {
            return Err(invalid());
        }
        Ok(Cursor {
            created_at,
            id: Uuid::parse_str(id).map_err(|_| invalid())?,
        })
    }
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertPage {
    /// The alerts of this page, newest first.
    pub alerts: Vec<Alert>,
    /// How many alerts match the filter, across all pages.
    pub total: u64,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_alert() -> NewAlert {
        NewAlert {
            source: "api".into(),
            severity: Severity::P2,
            title: "Database Connection Slow".into(),
            namespace: Some("monitoring".into()),
            labels: BTreeMap::from([("app".into(), "db".into())]),
            ..NewAlert::default()
        }
    }

    #[test]
    fn fingerprint_ignores_description_annotations_and_severity() {
        let a = new_alert();
        let mut b = new_alert();
        b.description = Some("other".into());
        b.severity = Severity::P1;
        b.annotations.insert("runbook".into(), "x".into());
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.labels.insert("pod".into(), "p-1".into());
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn fingerprint_is_sha256_of_the_identity_json() {
        // Stored fingerprints stay valid only while this text does not change.
        let hex = |text: &str| -> String {
            Sha256::digest(text.as_bytes())
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect()
        };
        let mut alert = new_alert();
        assert_eq!(
            alert.fingerprint(),
            hex(r#"["api","monitoring","Database Connection Slow",{"app":"db"}]"#)
        );
        alert.namespace = None;
        alert.labels.insert("a\"b".into(), "é".into());
        assert_eq!(
            alert.fingerprint(),
            hex(r#"["api",null,"Database Connection Slow",{"a\"b":"é","app":"db"}]"#)
        );
        alert.identity = Identity::LabelSet;
        assert_eq!(
            alert.fingerprint(),
            hex(r#"["labels",{"a\"b":"é","app":"db"}]"#)
        );
    }

    #[test]
    fn group_id_is_stable_across_refires() {
        let first = new_alert().into_alert(now());
        let second = new_alert().into_alert(now());
        assert_ne!(first.id, second.id);
        assert_eq!(first.alert_group_id, second.alert_group_id);
    }

    #[test]
    fn lifecycle_allows_only_forward_changes() {
        let alert = new_alert().into_alert(now());
        let ack = Change::Acknowledge {
            by: Some("ann".into()),
        };
        let resolve = Change::Resolve {
            by: None,
            note: None,
        };
        let (acked, entry) = ack.apply(alert.clone(), None, now()).expect("ack firing");
        assert_eq!(acked.status, Status::Acknowledged);
        assert_eq!(acked.acknowledged_by.as_deref(), Some("ann"));
        assert_eq!(entry.action, "acknowledged");
        assert!(matches!(
            ack.apply(acked.clone(), None, now()),
            Err(Error::Conflict(_))
        ));
        let (resolved, _) = resolve.apply(acked, None, now()).expect("resolve acked");
        assert!(matches!(
            resolve.apply(resolved.clone(), None, now()),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(
            ack.apply(resolved.clone(), None, now()),
            Err(Error::Conflict(_))
        ));
        let assign = Change::Assign {
            assigned_to: "bob".into(),
            note: None,
        };
        assert!(matches!(
            assign.apply(resolved, None, now()),
            Err(Error::Conflict(_))
        ));
        let (direct, _) = resolve.apply(alert, None, now()).expect("resolve firing");
        assert_eq!(direct.status, Status::Resolved);
    }

    #[test]
    fn validation_names_the_field() {
        let mut alert = new_alert();
        alert.title = "x".repeat(MAX_TITLE + 1);
        match alert.validate() {
            Err(Error::Invalid { field, .. }) => assert_eq!(field, "title"),
            other => panic!("expected invalid title, got {other:?}"),
        }
        let mut alert = new_alert();
        alert.source = " ".into();
        assert!(matches!(alert.validate(), Err(Error::Invalid { field, .. }) if field == "source"));
    }

    #[test]
    fn cursor_round_trips() {
        let alert = new_alert().into_alert(now());
        let cursor = Cursor::after(&alert);
        assert_eq!(cursor.to_string().parse::<Cursor>(), Ok(cursor));
        assert!("garbage".parse::<Cursor>().is_err());
        let far_past = format!("{}_{}", i64::MIN / 2, uuid::Uuid::nil().simple());
        assert!(far_past.parse::<Cursor>().is_err());
    }
}
