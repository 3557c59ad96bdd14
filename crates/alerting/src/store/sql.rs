//! The SQL of the store, written once and compiled for PostgreSQL and for SQLite.
//!
//! The two differ only in how a timestamp is bound (PostgreSQL `timestamptz`; SQLite fixed-width RFC 3339 text,
//! whose text order is time order), how a label filter is written, and row locking (`FOR UPDATE`; SQLite's
//! single writer connection needs none).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder, Sqlite};
use uuid::Uuid;

use super::rows::{
    ActionRow, AlertRow, FollowUpRow, NotificationRow, SilenceActionRow, SilenceRow,
};
use super::{
    ClaimedFollowUp, CreationOutcome, DeliveryRecord, Item, NextFollowUp, NotificationFilter,
};
use crate::error::{Error, Result};
use crate::model::{
    Alert, AlertFilter, AlertPage, AuditEntry, Cursor, NewNotification, Notification, Severity,
    Status,
};
use crate::notify::policy::Fallback;
use crate::silence::{Silence, SilenceAction};

pub(super) const SELECT_ALERT: &str = concat!("SELECT ", alert_columns!(), " FROM alerts_active");

const INSERT_ALERT: &str = "INSERT INTO alerts_active (id, alert_group_id, fingerprint, source, severity, status, \
     title, description, namespace, labels, annotations, incident_id, jaeger_trace_id, created_at, acknowledged_at, \
     acknowledged_by, updated_at, resolved_at, assigned_to, ends_at, created_by) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) \
     ON CONFLICT (alert_group_id) WHERE status <> 'resolved' DO NOTHING";

const UPDATE_ALERT: &str = "UPDATE alerts_active SET status = $2, acknowledged_at = $3, acknowledged_by = $4, \
     updated_at = $5, resolved_at = $6, assigned_to = $7, incident_id = $8 WHERE id = $1";

const INSERT_ACTION: &str = "INSERT INTO alert_actions (alert_id, action, actor, details, created_at) VALUES ($1, $2, $3, $4, $5)";

/// The audit rows of an alert, oldest first. The `created` entry of a deleted alert is written when it is deleted
/// (see [`AuditEntry::created`]), so the order is by time.
/// Who created an alert: the actor of its `created` entry (see [`AuditEntry::created`]).
const CREATED_BY: &str = "SELECT created_by FROM alerts_active WHERE id = $1";

const SELECT_ACTIONS: &str = "SELECT alert_id, action, actor, details, created_at FROM alert_actions \
     WHERE alert_id = $1 ORDER BY created_at, id";

const INSERT_NOTIFICATION: &str = "INSERT INTO notifications (alert_id, event, status, payload, attempts, \
     next_attempt_at, created_at, receiver, route, group_key) VALUES ($1, $2, 'pending', $3, 0, $7, $4, $5, $6, $8)";

const INSERT_FOLLOWUP: &str = "INSERT INTO notify_followups (alert_id, receiver, route, repeat_at, escalate_at, \
     step, due_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// An alert's follow-ups, removed once it is acknowledged, resolved or deleted: nothing is left to remind of.
const DELETE_FOLLOWUPS: &str = "DELETE FROM notify_followups WHERE alert_id = $1";

const FOLLOWUP_COLUMNS: &str =
    "alert_id, receiver, route, repeat_at, repeats, escalate_at, step, due_at";

const NOTIFICATION_COLUMNS: &str = "id, alert_id, event, status, payload, attempts, next_attempt_at, last_error, \
     created_at, sent_at, slack_channel, slack_ts, receiver, route, group_key";

const OPEN_COUNTS: &str = "SELECT status, severity, COUNT(*) FROM alerts_active WHERE status <> 'resolved' \
     GROUP BY status, severity";

/// A repeat of an open alert from a rule engine: what may change while it stays the same alert, and its end time;
/// not over a later change (a repeat received later, stored first by another writer, keeps the last word).
const REFRESH_OPEN: &str = "UPDATE alerts_active SET title = $2, description = $3, annotations = $4, ends_at = $5, \
     updated_at = $6 WHERE id = $1 AND status <> 'resolved' AND updated_at <= $6";

/// Open alerts with an end time, earliest end first (the expiry sweep reads up to the first not ended).
const ENDING_FIRST: &str = "SELECT id, ends_at FROM alerts_active WHERE status <> 'resolved' \
     AND ends_at IS NOT NULL ORDER BY ends_at LIMIT $1";

/// The `LIKE` pattern of titles containing `text`, case-insensitively (as `LOWER(title)` lowers ASCII on both
/// databases): `%`, `_` and `\` in `text` are matched as themselves.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Creates a silence, or replaces the one with its id.
const UPSERT_SILENCE: &str = "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET matchers = excluded.matchers, \
     starts_at = excluded.starts_at, ends_at = excluded.ends_at, created_by = excluded.created_by, \
     comment = excluded.comment, updated_at = excluded.updated_at";

const SELECT_SILENCE: &str =
    "SELECT id, matchers, starts_at, ends_at, created_by, comment, updated_at FROM silences";

/// `open` (an open alert) after a repeat `from` of its rule engine: title, description, annotations and end time
/// from `from`, changed at `from.updated_at`.
fn refreshed(mut open: Alert, from: &Alert) -> Alert {
    open.title = from.title.clone();
    open.description = from.description.clone();
    open.annotations = from.annotations.clone();
    open.ends_at = from.ends_at;
    open.updated_at = from.updated_at;
    open
}

/// How many times an insert that lost a race with a resolution is tried again.
const INSERT_ATTEMPTS: usize = 3;

fn pg_time(time: DateTime<Utc>) -> DateTime<Utc> {
    time
}

/// Fixed-width UTC text (microseconds, `Z`), so that SQLite compares times as text correctly.
fn sqlite_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// `AND` the alert's labels hold every pair of `labels`, in one containment the GIN index answers (a key given
/// twice with two values holds for no alert).
fn pg_labels_filter<'a>(
    builder: &mut QueryBuilder<'_, Postgres>,
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
) {
    let mut wanted = BTreeMap::new();
    for (key, value) in labels {
        if wanted
            .insert(key.clone(), value.clone())
            .is_some_and(|before| before != *value)
        {
            builder.push(" AND FALSE");
        }
    }
    if !wanted.is_empty() {
        builder.push(" AND labels @> ").push_bind(Json(wanted));
    }
}

/// `AND` the alert's labels hold every pair of `labels`.
fn sqlite_labels_filter<'a>(
    builder: &mut QueryBuilder<'_, Sqlite>,
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
) {
    for (key, value) in labels {
        builder
            .push(
                " AND EXISTS (SELECT 1 FROM json_each(alerts_active.labels) WHERE json_each.key = ",
            )
            .push_bind(key.clone())
            .push(" AND json_each.value = ")
            .push_bind(value.clone())
            .push(")");
    }
}

macro_rules! sql_store {
    ($(#[$doc:meta])* $name:ident, $db:ty, time: $time:path, labels_filter: $labels_filter:path, lock: $lock:expr,
     skip_locked: $skip_locked:expr, commit_resent: $commit_resent:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            pool: sqlx::Pool<$db>,
        }

        impl $name {
            /// A store on `pool`, whose schema is already migrated.
            pub fn new(pool: sqlx::Pool<$db>) -> Self {
                Self { pool }
            }

            /// Stores each creation of `batch` (see [`super::Creation`]) in one transaction (one commit for the
            /// whole batch). Per creation: the stored, existing or refreshed alert, and whether it was created.
            /// The caller orders the batch by fingerprint, so concurrent batches lock rows in the same order.
            #[allow(dead_code)] // PostgreSQL's writers use `create_batch_bulk`.
            pub(super) async fn create_batch(
                &self,
                batch: &[Item<'_>],
            ) -> Result<Vec<Result<CreationOutcome>>> {
                let mut tx = self.pool.begin().await?;
                let results = Self::create_in(&mut tx, batch).await?;
                tx.commit().await?;
                Ok(results)
            }

            /// [`Self::create_batch`] in transaction `tx`, one statement after another.
            pub(super) async fn create_in(
                tx: &mut sqlx::Transaction<'_, $db>,
                batch: &[Item<'_>],
            ) -> Result<Vec<Result<CreationOutcome>>> {
                let mut results = Vec::with_capacity(batch.len());
                for creation in batch {
                    results.push(Self::insert_or_get_open(tx, creation).await?);
                }
                Ok(results)
            }

            async fn insert_or_get_open(
                tx: &mut sqlx::Transaction<'_, $db>,
                creation: Item<'_>,
            ) -> Result<Result<CreationOutcome>> {
                let alert = &creation.alert;
                for _ in 0..INSERT_ATTEMPTS {
                    let inserted = sqlx::query(INSERT_ALERT)
                        .bind(alert.id)
                        .bind(alert.alert_group_id)
                        .bind(&alert.fingerprint)
                        .bind(&alert.source)
                        .bind(alert.severity.as_str())
                        .bind(alert.status.as_str())
                        .bind(&alert.title)
                        .bind(&alert.description)
                        .bind(&alert.namespace)
                        .bind(Json(&alert.labels))
                        .bind(Json(&alert.annotations))
                        .bind(alert.incident_id)
                        .bind(&alert.jaeger_trace_id)
                        .bind($time(alert.created_at))
                        .bind(alert.acknowledged_at.map($time))
                        .bind(&alert.acknowledged_by)
                        .bind($time(alert.updated_at))
                        .bind(alert.resolved_at.map($time))
                        .bind(&alert.assigned_to)
                        .bind(alert.ends_at.map($time))
                        .bind(&creation.actor)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                    if inserted == 1 {
                        if let Some(notification) = &creation.notification {
                            Self::insert_notification(tx, notification).await?;
                        }
                        return Ok(Ok(CreationOutcome::Created));
                    }
                    let open = sqlx::query_as::<_, AlertRow>(&format!(
                        "{SELECT_ALERT} WHERE alert_group_id = $1 AND status <> 'resolved'"
                    ))
                    .bind(alert.alert_group_id)
                    .fetch_optional(&mut **tx)
                    .await?;
                    if let Some(row) = open {
                        let open = match Alert::try_from(row) {
                            Ok(open) => open,
                            Err(error) => return Ok(Err(error)),
                        };
                        if !creation.refresh
                            || open.updated_at > alert.updated_at
                            || !super::repeat_writes(&open, alert)
                        {
                            return Ok(Ok(CreationOutcome::Existing(Box::new(open))));
                        }
                        let open = refreshed(open, alert);
                        sqlx::query(REFRESH_OPEN)
                            .bind(open.id)
                            .bind(&open.title)
                            .bind(&open.description)
                            .bind(Json(&open.annotations))
                            .bind(open.ends_at.map($time))
                            .bind($time(open.updated_at))
                            .execute(&mut **tx)
                            .await?;
                        return Ok(Ok(CreationOutcome::Existing(Box::new(open))));
                    }
                    // The open duplicate was resolved between the insert and the select: insert again.
                }
                Ok(Err(Error::Conflict(format!(
                    "alert with fingerprint {} changed concurrently, try again",
                    alert.fingerprint
                ))))
            }

            async fn insert_action(
                tx: &mut sqlx::Transaction<'_, $db>,
                entry: &AuditEntry,
            ) -> Result<()> {
                sqlx::query(INSERT_ACTION)
                    .bind(entry.alert_id)
                    .bind(&entry.action)
                    .bind(&entry.actor)
                    .bind(Json(&entry.details))
                    .bind($time(entry.created_at))
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            async fn insert_notification(
                tx: &mut sqlx::Transaction<'_, $db>,
                notification: &NewNotification,
            ) -> Result<()> {
                for target in &notification.targets {
                    sqlx::query(INSERT_NOTIFICATION)
                        .bind(notification.alert_id)
                        .bind(notification.event)
                        .bind(Json(&notification.payload))
                        .bind($time(notification.created_at))
                        .bind(&target.receiver)
                        .bind(target.route)
                        .bind($time(target.due_at(notification.created_at)))
                        .bind(target.group.as_ref().map(|group| group.key.as_str()))
                        .execute(&mut **tx)
                        .await?;
                    if let Some((follow_up, due_at)) = target
                        .follow_up
                        .and_then(|f| f.due_at().map(|due_at| (f, due_at)))
                    {
                        sqlx::query(INSERT_FOLLOWUP)
                            .bind(notification.alert_id)
                            .bind(&target.receiver)
                            .bind(target.route)
                            .bind(follow_up.repeat_at.map($time))
                            .bind(follow_up.escalate_at.map($time))
                            .bind(follow_up.step)
                            .bind($time(due_at))
                            .execute(&mut **tx)
                            .await?;
                    }
                }
                Ok(())
            }

            pub(super) async fn hand_over(
                &self,
                receiver: &str,
                fallback: &Fallback,
                now: DateTime<Utc>,
            ) -> Result<u64> {
                let mut tx = self.pool.begin().await?;
                let ids: Vec<i64> = sqlx::query_scalar(&format!(
                    "SELECT id FROM notifications WHERE receiver = $1 AND route = $2 AND status = 'pending' \
                     AND fallback_at IS NULL ORDER BY id LIMIT 1000{}",
                    $lock
                ))
                .bind(receiver)
                .bind(fallback.route)
                .fetch_all(&mut *tx)
                .await?;
                let target = &fallback.config.receiver;
                for id in &ids {
                    sqlx::query(
                        "INSERT INTO notifications (alert_id, event, status, payload, attempts, next_attempt_at, \
                         created_at, receiver, route, group_key) SELECT alert_id, event, 'pending', payload, 0, $2, \
                         created_at, $3, route, group_key FROM notifications WHERE id = $1",
                    )
                    .bind(id)
                    .bind($time(now))
                    .bind(target)
                    .execute(&mut *tx)
                    .await?;
                    let mark = if fallback.config.deliver_late {
                        sqlx::query("UPDATE notifications SET fallback_at = $2 WHERE id = $1")
                            .bind(id)
                            .bind($time(now))
                    } else {
                        sqlx::query(
                            "UPDATE notifications SET fallback_at = $2, status = 'failed', last_error = $3 \
                             WHERE id = $1",
                        )
                        .bind(id)
                        .bind($time(now))
                        .bind(format!("handed over to the fallback receiver {target}"))
                    };
                    mark.execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(ids.len() as u64)
            }

            pub(super) async fn claim_followups(
                &self,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
                limit: u32,
            ) -> Result<Vec<ClaimedFollowUp>> {
                let rows: Vec<FollowUpRow> = sqlx::query_as(&format!(
                    "UPDATE notify_followups SET due_at = $2 WHERE (alert_id, receiver) IN ( \
                       SELECT alert_id, receiver FROM notify_followups WHERE due_at <= $1 \
                       ORDER BY due_at LIMIT $3{}) \
                     RETURNING {FOLLOWUP_COLUMNS}",
                    $skip_locked
                ))
                .bind($time(now))
                .bind($time(lease_until))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                let mut claimed: Vec<ClaimedFollowUp> = rows.into_iter().map(ClaimedFollowUp::from).collect();
                claimed.sort_by_key(|row| (row.follow_up.due_at(), row.alert_id));
                Ok(claimed)
            }

            pub(super) async fn finish_followup(
                &self,
                claimed: &ClaimedFollowUp,
                next: Option<NextFollowUp>,
                notifications: &[NewNotification],
                entries: &[AuditEntry],
            ) -> Result<bool> {
                let mut tx = self.pool.begin().await?;
                let query = match next {
                    Some(NextFollowUp { follow_up, repeats, due_at }) => sqlx::query(
                        "UPDATE notify_followups SET repeat_at = $3, repeats = $4, escalate_at = $5, step = $6, \
                         due_at = $7 WHERE alert_id = $1 AND receiver = $2 AND due_at = $8",
                    )
                    .bind(claimed.alert_id)
                    .bind(&claimed.receiver)
                    .bind(follow_up.repeat_at.map($time))
                    .bind(repeats)
                    .bind(follow_up.escalate_at.map($time))
                    .bind(follow_up.step)
                    .bind($time(due_at))
                    .bind($time(claimed.held)),
                    None => sqlx::query(
                        "DELETE FROM notify_followups WHERE alert_id = $1 AND receiver = $2 AND due_at = $3",
                    )
                    .bind(claimed.alert_id)
                    .bind(&claimed.receiver)
                    .bind($time(claimed.held)),
                };
                if query.execute(&mut *tx).await?.rows_affected() != 1 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                for notification in notifications {
                    Self::insert_notification(&mut tx, notification).await?;
                }
                for entry in entries {
                    Self::insert_action(&mut tx, entry).await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            pub(super) async fn claim_due(
                &self,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
                limit: u32,
                receiver: &str,
            ) -> Result<Vec<Notification>> {
                let mut rows: Vec<NotificationRow> = sqlx::query_as(&format!(
                    "UPDATE notifications SET next_attempt_at = $2 WHERE id IN ( \
                       SELECT n.id FROM notifications n \
                       WHERE n.status = 'pending' AND n.receiver = $4 AND n.next_attempt_at <= $1 \
                         AND n.group_key IS NULL \
                         AND NOT EXISTS (SELECT 1 FROM notifications p \
                           WHERE p.receiver = n.receiver AND p.alert_id = n.alert_id AND p.status = 'pending' \
                             AND p.id < n.id) \
                       ORDER BY n.severity, n.id LIMIT $3{}) \
                     RETURNING {NOTIFICATION_COLUMNS}",
                    $skip_locked
                ))
                .bind($time(now))
                .bind($time(lease_until))
                .bind(i64::from(limit))
                .bind(receiver)
                .fetch_all(&self.pool)
                .await?;
                // Delivered in the order claimed: most urgent first, then oldest.
                rows.sort_by(|a, b| {
                    let severity = |row: &NotificationRow| {
                        row.payload.0["alert"]["severity"].as_str().map(str::to_owned)
                    };
                    (severity(a), a.id).cmp(&(severity(b), b.id))
                });
                rows.into_iter().map(Notification::try_from).collect()
            }

            pub(super) async fn renew_lease(
                &self,
                id: i64,
                held: DateTime<Utc>,
                until: DateTime<Utc>,
            ) -> Result<bool> {
                let renewed = sqlx::query(
                    "UPDATE notifications SET next_attempt_at = $3 \
                     WHERE id = $1 AND status = 'pending' AND next_attempt_at = $2",
                )
                .bind(id)
                .bind($time(held))
                .bind($time(until))
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(renewed == 1)
            }

            pub(super) async fn finish_notifications(
                &self,
                rows: &[(i64, DateTime<Utc>)],
                record: &DeliveryRecord,
            ) -> Result<u64> {
                let mut tx = self.pool.begin().await?;
                let mut finished = 0;
                for &(id, held) in rows {
                    let query = match record {
                        DeliveryRecord::Sent { at, channel, ts } => sqlx::query(
                            "UPDATE notifications SET status = 'sent', attempts = attempts + 1, sent_at = $2, \
                             slack_channel = $3, slack_ts = $4, last_error = NULL \
                             WHERE id = $1 AND status = 'pending' AND next_attempt_at = $5",
                        )
                        .bind(id)
                        .bind($time(*at))
                        .bind(channel.clone())
                        .bind(ts.clone()),
                        DeliveryRecord::Retry { at, error } => sqlx::query(
                            "UPDATE notifications SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3 \
                             WHERE id = $1 AND status = 'pending' AND next_attempt_at = $4",
                        )
                        .bind(id)
                        .bind($time(*at))
                        .bind(error.clone()),
                        DeliveryRecord::Failed { error } => sqlx::query(
                            "UPDATE notifications SET status = 'failed', attempts = attempts + 1, last_error = $2 \
                             WHERE id = $1 AND status = 'pending' AND next_attempt_at = $3",
                        )
                        .bind(id)
                        .bind(error.clone()),
                        DeliveryRecord::Released { at } => sqlx::query(
                            "UPDATE notifications SET next_attempt_at = $2 \
                             WHERE id = $1 AND status = 'pending' AND next_attempt_at = $3",
                        )
                        .bind(id)
                        .bind($time(*at)),
                    };
                    finished += query.bind($time(held)).execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                Ok(finished)
            }

            pub(super) async fn due_groups(
                &self,
                receiver: &str,
                now: DateTime<Utc>,
                limit: u32,
            ) -> Result<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT DISTINCT group_key FROM notifications \
                     WHERE status = 'pending' AND receiver = $1 AND group_key IS NOT NULL AND next_attempt_at <= $2 \
                     LIMIT $3",
                )
                .bind(receiver)
                .bind($time(now))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
            }

            pub(super) async fn group_sent_at(
                &self,
                receiver: &str,
                group_key: &str,
            ) -> Result<Option<DateTime<Utc>>> {
                let last: Option<DateTime<Utc>> = sqlx::query_scalar(
                    "SELECT sent_at FROM notifications \
                     WHERE status = 'sent' AND receiver = $1 AND group_key = $2 AND sent_at IS NOT NULL \
                     ORDER BY sent_at DESC LIMIT 1",
                )
                .bind(receiver)
                .bind(group_key)
                .fetch_optional(&self.pool)
                .await?;
                Ok(last)
            }

            pub(super) async fn claim_group(
                &self,
                receiver: &str,
                group_key: &str,
                horizon: DateTime<Utc>,
                lease_until: DateTime<Utc>,
                limit: u32,
            ) -> Result<Vec<Notification>> {
                let mut rows: Vec<NotificationRow> = sqlx::query_as(&format!(
                    "UPDATE notifications SET next_attempt_at = $4 WHERE id IN ( \
                       SELECT n.id FROM notifications n \
                       WHERE n.status = 'pending' AND n.receiver = $1 AND n.group_key = $2 \
                         AND n.next_attempt_at <= $3 \
                         AND NOT EXISTS (SELECT 1 FROM notifications p \
                           WHERE p.receiver = n.receiver AND p.alert_id = n.alert_id AND p.status = 'pending' \
                             AND p.id < n.id \
                             AND NOT (COALESCE(p.group_key, '') = n.group_key AND p.next_attempt_at <= $3)) \
                       ORDER BY n.id LIMIT $5{}) \
                     RETURNING {NOTIFICATION_COLUMNS}",
                    $skip_locked
                ))
                .bind(receiver)
                .bind(group_key)
                .bind($time(horizon))
                .bind($time(lease_until))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.sort_by_key(|row| row.id);
                rows.into_iter().map(Notification::try_from).collect()
            }

            pub(super) async fn message_alerts(
                &self,
                receiver: &str,
                ts: &str,
            ) -> Result<Vec<(Uuid, Option<i32>)>> {
                Ok(sqlx::query_as(
                    "SELECT alert_id, route FROM notifications \
                     WHERE receiver = $1 AND slack_ts = $2 AND event = 'created' ORDER BY id LIMIT 1000",
                )
                .bind(receiver)
                .bind(ts)
                .fetch_all(&self.pool)
                .await?)
            }

            pub(super) async fn thread_of(
                &self,
                alert_id: Uuid,
                receiver: &str,
            ) -> Result<Option<(String, String)>> {
                let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
                    "SELECT slack_channel, slack_ts FROM notifications \
                     WHERE alert_id = $1 AND receiver = $2 AND event = 'created' AND status = 'sent' \
                     ORDER BY id LIMIT 1",
                )
                .bind(alert_id)
                .bind(receiver)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.and_then(|(channel, ts)| Some((channel?, ts?))))
            }

            pub(super) async fn notifications(
                &self,
                filter: &NotificationFilter,
            ) -> Result<(Vec<Notification>, u64)> {
                let push_filter = |builder: &mut QueryBuilder<'_, $db>| {
                    builder.push(" WHERE 1 = 1");
                    if let Some(status) = filter.status {
                        builder.push(" AND status = ").push_bind(status.as_str());
                    }
                    if let Some(alert_id) = filter.alert_id {
                        builder.push(" AND alert_id = ").push_bind(alert_id);
                    }
                    if let Some(receiver) = &filter.receiver {
                        builder.push(" AND receiver = ").push_bind(receiver.clone());
                    }
                };
                let mut count = QueryBuilder::<$db>::new("SELECT COUNT(*) FROM notifications");
                push_filter(&mut count);
                // Planned for its values each time, as the alert listings below are.
                let total: i64 = count.build_query_scalar().persistent(false).fetch_one(&self.pool).await?;
                let mut page = QueryBuilder::<$db>::new(format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications"));
                push_filter(&mut page);
                page.push(" ORDER BY id DESC LIMIT ")
                    .push_bind(i64::from(filter.limit))
                    .push(" OFFSET ")
                    .push_bind(i64::try_from(filter.offset).unwrap_or(i64::MAX));
                let rows: Vec<NotificationRow> = page.build_query_as().persistent(false).fetch_all(&self.pool).await?;
                let notifications = rows
                    .into_iter()
                    .map(Notification::try_from)
                    .collect::<Result<Vec<_>>>()?;
                Ok((notifications, u64::try_from(total).unwrap_or_default()))
            }

            pub(super) async fn pending_notifications(&self) -> Result<i64> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE status = 'pending'")
                    .fetch_one(&self.pool)
                    .await?)
            }

            pub(super) async fn pending_by_receiver(&self) -> Result<Vec<(String, i64)>> {
                Ok(sqlx::query_as(
                    "SELECT receiver, COUNT(*) FROM notifications WHERE status = 'pending' \
                     GROUP BY receiver ORDER BY receiver",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            pub(super) async fn get(&self, id: Uuid) -> Result<Option<Alert>> {
                sqlx::query_as::<_, AlertRow>(&format!("{SELECT_ALERT} WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(Alert::try_from)
                    .transpose()
            }

            pub(super) async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<Alert>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut query = QueryBuilder::<$db>::new(format!("{SELECT_ALERT} WHERE id IN ("));
                let mut separated = query.separated(", ");
                for id in ids {
                    separated.push_bind(*id);
                }
                query.push(") ORDER BY created_at, id");
                let rows: Vec<AlertRow> = query.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter().map(Alert::try_from).collect()
            }

            fn push_filter(builder: &mut QueryBuilder<'_, $db>, filter: &AlertFilter) {
                builder.push(" WHERE 1 = 1");
                if let Some(status) = filter.status {
                    builder.push(" AND status = ").push_bind(status.as_str());
                }
                if let Some(severity) = filter.severity {
                    builder.push(" AND severity = ").push_bind(severity.as_str());
                }
                if let Some(namespace) = &filter.namespace {
                    builder.push(" AND namespace = ").push_bind(namespace.clone());
                }
                if let Some(source) = &filter.source {
                    builder.push(" AND source = ").push_bind(source.clone());
                }
                $labels_filter(builder, filter.labels.iter().map(|(key, value)| (key, value)));
                if let Some(text) = &filter.title_contains {
                    builder
                        .push(" AND LOWER(title) LIKE ")
                        .push_bind(like_pattern(text))
                        .push(" ESCAPE '\\'");
                }
                if let Some(since) = filter.since {
                    builder.push(" AND created_at >= ").push_bind($time(since));
                }
                if let Some(until) = filter.until {
                    builder.push(" AND created_at < ").push_bind($time(until));
                }
            }

            pub(super) async fn list(&self, filter: &AlertFilter) -> Result<AlertPage> {
                // A filtered listing is planned for its values each time (not prepared): after five runs of a
                // prepared statement PostgreSQL may keep a generic plan, which cannot know how selective a filter
                // is and walks every open alert in time order to find the few a label matches (a listing of 2,000
                // of 100,000 open alerts read every one). Planning costs well under a millisecond.
                let mut count = QueryBuilder::<$db>::new("SELECT COUNT(*) FROM alerts_active");
                Self::push_filter(&mut count, filter);
                let total: i64 = count.build_query_scalar().persistent(false).fetch_one(&self.pool).await?;

                let mut page = QueryBuilder::<$db>::new(SELECT_ALERT);
                Self::push_filter(&mut page, filter);
                if let Some(Cursor { created_at, id }) = filter.after {
                    page.push(" AND (created_at, id) < (")
                        .push_bind($time(created_at))
                        .push(", ")
                        .push_bind(id)
                        .push(")");
                }
                page.push(" ORDER BY created_at DESC, id DESC LIMIT ")
                    .push_bind(i64::from(filter.limit) + 1)
                    .push(" OFFSET ")
                    .push_bind(i64::try_from(filter.offset).unwrap_or(i64::MAX));
                let rows: Vec<AlertRow> = page.build_query_as().persistent(false).fetch_all(&self.pool).await?;
                let mut alerts = rows
                    .into_iter()
                    .map(Alert::try_from)
                    .collect::<Result<Vec<_>>>()?;
                let limit = usize::try_from(filter.limit).unwrap_or(usize::MAX);
                let next_cursor = if alerts.len() > limit {
                    alerts.truncate(limit);
                    alerts.last().map(|last| Cursor::after(last).to_string())
                } else {
                    None
                };
                Ok(AlertPage {
                    alerts,
                    total: u64::try_from(total).unwrap_or_default(),
                    next_cursor,
                })
            }

            /// Locks alert `id`; with `expired_before`, only if it is open and its end time is before that.
            async fn lock(
                tx: &mut sqlx::Transaction<'_, $db>,
                id: Uuid,
                expired_before: Option<DateTime<Utc>>,
            ) -> Result<Option<Alert>> {
                let row = match expired_before {
                    None => sqlx::query_as::<_, AlertRow>(&format!("{SELECT_ALERT} WHERE id = $1{}", $lock))
                        .bind(id)
                        .fetch_optional(&mut **tx)
                        .await?,
                    Some(before) => sqlx::query_as::<_, AlertRow>(&format!(
                        "{SELECT_ALERT} WHERE id = $1 AND status <> 'resolved' AND ends_at < $2{}",
                        $lock
                    ))
                    .bind(id)
                    .bind($time(before))
                    .fetch_optional(&mut **tx)
                    .await?,
                };
                row.map(Alert::try_from).transpose()
            }

            pub(super) async fn update<F>(&self, id: Uuid, change: F) -> Result<Alert>
            where
                F: FnOnce(Alert) -> Result<super::Changed> + Send,
            {
                self.update_locked(id, None, change).await?.ok_or(Error::NotFound(id))
            }

            pub(super) async fn update_if_expired<F>(
                &self,
                id: Uuid,
                now: DateTime<Utc>,
                change: F,
            ) -> Result<Option<Alert>>
            where
                F: FnOnce(Alert) -> Result<super::Changed> + Send,
            {
                self.update_locked(id, Some(now), change).await
            }

            async fn update_locked<F>(
                &self,
                id: Uuid,
                expired_before: Option<DateTime<Utc>>,
                change: F,
            ) -> Result<Option<Alert>>
            where
                F: FnOnce(Alert) -> Result<super::Changed> + Send,
            {
                let mut tx = self.pool.begin().await?;
                let Some(current) = Self::lock(&mut tx, id, expired_before).await? else {
                    return Ok(None);
                };
                let changed = change(current)?;
                Self::write_change(&mut tx, &changed).await?;
                tx.commit().await?;
                Ok(Some(changed.0))
            }

            /// Writes a change of an alert locked in `tx`: the alert's row, its audit entry, its notification; an
            /// alert no longer firing loses its follow-ups.
            async fn write_change(
                tx: &mut sqlx::Transaction<'_, $db>,
                (alert, entry, notification): &super::Changed,
            ) -> Result<()> {
                if alert.status != Status::Firing {
                    sqlx::query(DELETE_FOLLOWUPS)
                        .bind(alert.id)
                        .execute(&mut **tx)
                        .await?;
                }
                sqlx::query(UPDATE_ALERT)
                    .bind(alert.id)
                    .bind(alert.status.as_str())
                    .bind(alert.acknowledged_at.map($time))
                    .bind(&alert.acknowledged_by)
                    .bind($time(alert.updated_at))
                    .bind(alert.resolved_at.map($time))
                    .bind(&alert.assigned_to)
                    .bind(alert.incident_id)
                    .execute(&mut **tx)
                    .await?;
                Self::insert_action(tx, entry).await?;
                if let Some(notification) = notification {
                    Self::insert_notification(tx, notification).await?;
                }
                Ok(())
            }

            /// See [`super::Store::apply_in_order`].
            pub(super) async fn apply_in_order<F>(
                &self,
                steps: Vec<super::Step>,
                resolve: &F,
                durability: super::Durability,
            ) -> Result<Vec<super::Applied>>
            where
                F: Fn(Alert) -> Result<super::Changed> + Send + Sync,
            {
                use super::{Applied, Step};
                let mut tx = self.pool.begin().await?;
                let commit_resent: &str = $commit_resent;
                if durability == super::Durability::Resent && !commit_resent.is_empty() {
                    sqlx::query(commit_resent).execute(&mut *tx).await?;
                }
                let mut applied = Vec::with_capacity(steps.len());
                for step in steps {
                    match step {
                        Step::Create(creation) => {
                            let outcome = Self::insert_or_get_open(&mut tx, &creation).await??;
                            let (alert, created) = outcome.into_alert(creation.alert);
                            applied.push(Applied::Created(alert, created));
                        }
                        Step::Resolve(fingerprint) => {
                            let open = sqlx::query_as::<_, AlertRow>(&format!(
                                "{SELECT_ALERT} WHERE alert_group_id = $1 AND status <> 'resolved'{}",
                                $lock
                            ))
                            .bind(crate::model::group_id(&fingerprint))
                            .fetch_optional(&mut *tx)
                            .await?;
                            let resolved = match open {
                                Some(row) => {
                                    let changed = resolve(Alert::try_from(row)?)?;
                                    Self::write_change(&mut tx, &changed).await?;
                                    Some(changed.0)
                                }
                                None => None,
                            };
                            applied.push(Applied::Resolved(resolved));
                        }
                    }
                }
                tx.commit().await?;
                Ok(applied)
            }

            pub(super) async fn delete<F>(&self, id: Uuid, entry: F) -> Result<Alert>
            where
                F: FnOnce(&Alert) -> AuditEntry + Send,
            {
                let mut tx = self.pool.begin().await?;
                let alert = Self::lock(&mut tx, id, None).await?.ok_or(Error::NotFound(id))?;
                // The `created` entry leaves the alert's row for the audit table.
                let created_by: Option<String> = sqlx::query_scalar(CREATED_BY)
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM alerts_active WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(DELETE_FOLLOWUPS).bind(id).execute(&mut *tx).await?;
                Self::insert_action(&mut tx, &AuditEntry::created(&alert, created_by)).await?;
                Self::insert_action(&mut tx, &entry(&alert)).await?;
                tx.commit().await?;
                Ok(alert)
            }

            /// The audit trail of alert `id`, oldest first: its `created` entry from its row (see
            /// [`AuditEntry::created`]), then the audit rows. The row is read first, so that a deletion in between
            /// (which writes the `created` entry to the audit table) still shows that entry once.
            pub(super) async fn actions(&self, id: Uuid) -> Result<Vec<AuditEntry>> {
                let created = match self.get(id).await? {
                    Some(alert) => {
                        let created_by: Option<Option<String>> = sqlx::query_scalar(CREATED_BY)
                            .bind(id)
                            .fetch_optional(&self.pool)
                            .await?;
                        Some(AuditEntry::created(&alert, created_by.flatten()))
                    }
                    None => None,
                };
                let rows: Vec<ActionRow> = sqlx::query_as(SELECT_ACTIONS)
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await?;
                let mut entries = Vec::with_capacity(rows.len() + 1);
                if !rows.iter().any(|row| row.action == "created") {
                    entries.extend(created);
                }
                entries.extend(rows.into_iter().map(AuditEntry::from));
                Ok(entries)
            }

            pub(super) async fn open_from(&self, source: &str) -> Result<Vec<Alert>> {
                sqlx::query_as::<_, AlertRow>(&format!(
                    "{SELECT_ALERT} WHERE source = $1 AND status <> 'resolved' ORDER BY created_at, id"
                ))
                .bind(source)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(Alert::try_from)
                .collect()
            }

            pub(super) async fn open_page(
                &self,
                after: Option<(DateTime<Utc>, Uuid)>,
                selection: &super::OpenSelection,
                limit: u32,
            ) -> Result<Vec<Alert>> {
                let mut page = QueryBuilder::<$db>::new(SELECT_ALERT);
                page.push(" WHERE status <> 'resolved'");
                if let Some((created_at, id)) = after {
                    page.push(" AND (created_at, id) > (")
                        .push_bind($time(created_at))
                        .push(", ")
                        .push_bind(id)
                        .push(")");
                }
                match &selection.alertname {
                    None => $labels_filter(&mut page, &selection.labels),
                    Some(alertname) => {
                        // Either the alert stores it with the other labels (one containment), or it stores no
                        // `alertname` and takes its title as one (see `alert_labels`): the open alerts without
                        // one have an index of their own on PostgreSQL (migration 0016). `->>` reads a key alike
                        // on both databases; a label's value is never JSON null.
                        let name = "alertname".to_owned();
                        page.push(" AND ((TRUE");
                        $labels_filter(&mut page, selection.labels.iter().chain([(&name, alertname)]));
                        page.push(") OR (labels ->> 'alertname' IS NULL AND title = ")
                            .push_bind(alertname.clone());
                        $labels_filter(&mut page, &selection.labels);
                        page.push("))");
                    }
                }
                page.push(" ORDER BY created_at, id LIMIT ")
                    .push_bind(i64::from(limit));
                // Planned for its values each time, as `list` is.
                let rows: Vec<AlertRow> = page.build_query_as().persistent(false).fetch_all(&self.pool).await?;
                rows.into_iter().map(Alert::try_from).collect()
            }

            pub(super) async fn ending_first(&self, limit: u32) -> Result<Vec<(Uuid, DateTime<Utc>)>> {
                Ok(sqlx::query_as::<_, (Uuid, DateTime<Utc>)>(ENDING_FIRST)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?)
            }

            pub(super) async fn upsert_silence(&self, silence: &Silence, action: &SilenceAction) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(UPSERT_SILENCE)
                    .bind(silence.id)
                    .bind(Json(&silence.matchers))
                    .bind($time(silence.starts_at))
                    .bind($time(silence.ends_at))
                    .bind(&silence.created_by)
                    .bind(&silence.comment)
                    .bind($time(silence.updated_at))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO silence_actions (silence_id, action, actor, details, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(action.silence_id)
                .bind(&action.action)
                .bind(&action.actor)
                .bind(Json(&action.details))
                .bind($time(action.created_at))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            pub(super) async fn silence_actions(&self, id: Uuid) -> Result<Vec<SilenceAction>> {
                let rows: Vec<SilenceActionRow> = sqlx::query_as(
                    "SELECT silence_id, action, actor, details, created_at FROM silence_actions \
                     WHERE silence_id = $1 ORDER BY id",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(SilenceAction::from).collect())
            }

            pub(super) async fn delete_silences_ended_before(&self, before: DateTime<Utc>) -> Result<u64> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "DELETE FROM silence_actions WHERE silence_id IN (SELECT id FROM silences WHERE ends_at < $1)",
                )
                .bind($time(before))
                .execute(&mut *tx)
                .await?;
                let deleted = sqlx::query("DELETE FROM silences WHERE ends_at < $1")
                    .bind($time(before))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(deleted)
            }

            pub(super) async fn silences(&self, ending_after: Option<DateTime<Utc>>) -> Result<Vec<Silence>> {
                let rows: Vec<SilenceRow> = match ending_after {
                    Some(after) => sqlx::query_as(&format!("{SELECT_SILENCE} WHERE ends_at > $1 ORDER BY starts_at, id"))
                        .bind($time(after))
                        .fetch_all(&self.pool)
                        .await?,
                    None => sqlx::query_as(&format!("{SELECT_SILENCE} ORDER BY starts_at, id"))
                        .fetch_all(&self.pool)
                        .await?,
                };
                Ok(rows.into_iter().map(Silence::from).collect())
            }

            pub(super) async fn silence(&self, id: Uuid) -> Result<Option<Silence>> {
                let row: Option<SilenceRow> = sqlx::query_as(&format!("{SELECT_SILENCE} WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(Silence::from))
            }

            pub(super) async fn open_counts(&self) -> Result<Vec<(Status, Severity, u64)>> {
                let rows: Vec<(String, String, i64)> = sqlx::query_as(OPEN_COUNTS).fetch_all(&self.pool).await?;
                rows.into_iter()
                    .map(|(status, severity, count)| {
                        let status = status
                            .parse()
                            .map_err(|error: String| Error::Internal(format!("alerts_active.status: {error}")))?;
                        let severity = severity
                            .parse()
                            .map_err(|error: String| Error::Internal(format!("alerts_active.severity: {error}")))?;
                        Ok((status, severity, u64::try_from(count).unwrap_or_default()))
                    })
                    .collect()
            }

            pub(super) async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            pub(super) async fn close(&self) {
                self.pool.close().await;
            }
        }
    };
}

sql_store!(
    /// The store on PostgreSQL.
    PostgresStore, Postgres, time: pg_time, labels_filter: pg_labels_filter, lock: " FOR UPDATE",
    skip_locked: " FOR UPDATE SKIP LOCKED", commit_resent: "SET LOCAL synchronous_commit = off"
);
sql_store!(
    /// The store on embedded SQLite.
    SqliteStore, Sqlite, time: sqlite_time, labels_filter: sqlite_labels_filter, lock: "",
    skip_locked: "", commit_resent: ""
);
