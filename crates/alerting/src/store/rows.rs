//! Rows as both databases return them, and their mapping onto the model's types.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::{Alert, AuditEntry, FollowUp, Notification};

use super::ClaimedFollowUp;
use crate::silence::{Matcher, Silence, SilenceAction};

/// The columns of an alert, in the order [`AlertRow`] reads them.
macro_rules! alert_columns {
    () => {
        "id, alert_group_id, fingerprint, source, severity, status, title, description, namespace, labels, \
         annotations, incident_id, jaeger_trace_id, created_at, acknowledged_at, acknowledged_by, updated_at, \
         resolved_at, assigned_to, ends_at"
    };
}

/// A row of `alerts_active`, as both databases return it.
#[derive(sqlx::FromRow)]
pub(super) struct AlertRow {
    pub(super) id: Uuid,
    pub(super) alert_group_id: Uuid,
    pub(super) fingerprint: String,
    pub(super) source: String,
    pub(super) severity: String,
    pub(super) status: String,
    pub(super) title: String,
    pub(super) description: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) labels: sqlx::types::Json<std::collections::BTreeMap<String, String>>,
    pub(super) annotations: sqlx::types::Json<std::collections::BTreeMap<String, String>>,
    pub(super) incident_id: Option<Uuid>,
    pub(super) jaeger_trace_id: Option<String>,
    pub(super) created_at: DateTime<Utc>,
    pub(super) acknowledged_at: Option<DateTime<Utc>>,
    pub(super) acknowledged_by: Option<String>,
    pub(super) updated_at: DateTime<Utc>,
    pub(super) resolved_at: Option<DateTime<Utc>>,
    pub(super) assigned_to: Option<String>,
    pub(super) ends_at: Option<DateTime<Utc>>,
}

impl TryFrom<AlertRow> for Alert {
    type Error = Error;
    fn try_from(row: AlertRow) -> Result<Alert> {
        let corrupt =
            |what: String| Error::Internal(format!("alert {} in the store: {what}", row.id));
        Ok(Alert {
            severity: row.severity.parse().map_err(corrupt)?,
            status: row.status.parse().map_err(corrupt)?,
            id: row.id,
            alert_group_id: row.alert_group_id,
            fingerprint: row.fingerprint,
            source: row.source,
            title: row.title,
            description: row.description,
            namespace: row.namespace,
            labels: row.labels.0,
            annotations: row.annotations.0,
            incident_id: row.incident_id,
            jaeger_trace_id: row.jaeger_trace_id,
            created_at: row.created_at,
            acknowledged_at: row.acknowledged_at,
            acknowledged_by: row.acknowledged_by,
            updated_at: row.updated_at,
            resolved_at: row.resolved_at,
            assigned_to: row.assigned_to,
            ends_at: row.ends_at,
        })
    }
}

/// A row of `notifications`.
#[derive(sqlx::FromRow)]
pub(super) struct NotificationRow {
    pub(super) id: i64,
    pub(super) alert_id: Uuid,
    pub(super) event: String,
    pub(super) status: String,
    pub(super) payload: sqlx::types::Json<serde_json::Value>,
    pub(super) attempts: i32,
    pub(super) next_attempt_at: DateTime<Utc>,
    pub(super) last_error: Option<String>,
    pub(super) created_at: DateTime<Utc>,
    pub(super) sent_at: Option<DateTime<Utc>>,
    pub(super) slack_channel: Option<String>,
    pub(super) slack_ts: Option<String>,
    pub(super) receiver: String,
    pub(super) route: Option<i32>,
    pub(super) group_key: Option<String>,
}

impl TryFrom<NotificationRow> for Notification {
    type Error = Error;
    fn try_from(row: NotificationRow) -> Result<Notification> {
        Ok(Notification {
            status: row.status.parse().map_err(|error: String| {
                Error::Internal(format!("notification {} in the store: {error}", row.id))
            })?,
            id: row.id,
            alert_id: row.alert_id,
            event: row.event,
            payload: row.payload.0,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            last_error: row.last_error,
            created_at: row.created_at,
            sent_at: row.sent_at,
            slack_channel: row.slack_channel,
            slack_ts: row.slack_ts,
            receiver: row.receiver,
            route: row.route,
            group_key: row.group_key,
        })
    }
}

/// A row of `notify_followups`.
#[derive(sqlx::FromRow)]
pub(super) struct FollowUpRow {
    pub(super) alert_id: Uuid,
    pub(super) receiver: String,
    pub(super) route: Option<i32>,
    pub(super) repeat_at: Option<DateTime<Utc>>,
    pub(super) repeats: i32,
    pub(super) escalate_at: Option<DateTime<Utc>>,
    pub(super) step: i32,
    pub(super) due_at: DateTime<Utc>,
}

impl From<FollowUpRow> for ClaimedFollowUp {
    fn from(row: FollowUpRow) -> Self {
        ClaimedFollowUp {
            alert_id: row.alert_id,
            receiver: row.receiver,
            route: row.route,
            repeats: row.repeats,
            follow_up: FollowUp {
                repeat_at: row.repeat_at,
                escalate_at: row.escalate_at,
                step: row.step,
            },
            held: row.due_at,
        }
    }
}

/// A row of `alert_actions`.
#[derive(sqlx::FromRow)]
pub(super) struct ActionRow {
    pub(super) alert_id: Uuid,
    pub(super) action: String,
    pub(super) actor: Option<String>,
    pub(super) details: sqlx::types::Json<serde_json::Value>,
    pub(super) created_at: DateTime<Utc>,
}

impl From<ActionRow> for AuditEntry {
    fn from(row: ActionRow) -> Self {
        AuditEntry {
            alert_id: row.alert_id,
            action: row.action,
            actor: row.actor,
            details: row.details.0,
            created_at: row.created_at,
        }
    }
}

/// A row of `silences`.
#[derive(sqlx::FromRow)]
pub(super) struct SilenceRow {
    pub(super) id: Uuid,
    pub(super) matchers: sqlx::types::Json<Vec<Matcher>>,
    pub(super) starts_at: DateTime<Utc>,
    pub(super) ends_at: DateTime<Utc>,
    pub(super) created_by: String,
    pub(super) comment: String,
    pub(super) updated_at: DateTime<Utc>,
}

/// A row of `silence_actions`.
#[derive(sqlx::FromRow)]
pub(super) struct SilenceActionRow {
    pub(super) silence_id: Uuid,
    pub(super) action: String,
    pub(super) actor: Option<String>,
    pub(super) details: sqlx::types::Json<serde_json::Value>,
    pub(super) created_at: DateTime<Utc>,
}

impl From<SilenceActionRow> for SilenceAction {
    fn from(row: SilenceActionRow) -> Self {
        SilenceAction {
            silence_id: row.silence_id,
            action: row.action,
            actor: row.actor,
            details: row.details.0,
            created_at: row.created_at,
        }
    }
}

impl From<SilenceRow> for Silence {
    fn from(row: SilenceRow) -> Self {
        Silence {
            id: row.id,
            matchers: row.matchers.0,
            starts_at: row.starts_at,
            ends_at: row.ends_at,
            created_by: row.created_by,
            comment: row.comment,
            updated_at: row.updated_at,
        }
    }
}
