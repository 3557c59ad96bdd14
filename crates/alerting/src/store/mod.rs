//! Where alerts live: PostgreSQL in production, SQLite embedded. Both speak the same SQL (written once, in
//! [`sql`]) and behave the same; the store knows nothing of HTTP.
//!
//! This module is the facade ([`Store`]) and the types it takes and returns. Creations go through the
//! group-commit writer (`writer`), which on PostgreSQL stores new alerts in bulk (`pg_bulk`); rows are mapped
//! onto the model's types in `rows`.

/// The divisor of a repeat's window that gives how far it may move its alert's end time without being written
/// (see [`REPEAT_END_SLACK`]): a literal, so that `pg_bulk`'s SQL and the Rust rule read the same one.
macro_rules! repeat_end_slack {
    () => {
        8
    };
}

#[macro_use]
mod rows;
mod config;
mod pg_bulk;
mod pg_copy;
mod sql;
mod writer;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tracing::Instrument as _;
use uuid::Uuid;

pub use config::DatabaseConfig;

use crate::error::Result;
use crate::model::{
    Alert, AlertFilter, AlertPage, AuditEntry, FollowUp, NewNotification, Notification,
    NotificationStatus, Severity, Status,
};
use crate::notify::policy::Fallback;
use crate::silence::{Silence, SilenceAction};
use pg_bulk::PgWriter;
pub use sql::{PostgresStore, SqliteStore};
pub use writer::NotStored;
use writer::{Creations, PG_WRITERS, Writer};

/// The alert store, on one of the two databases.
///
/// Creations go through queues to the writer tasks, one queue each: the alerts of one group always go to the
/// same writer, so writers never wait on each other's rows. A writer takes every request waiting in its queue (up
/// to [`MAX_BATCH`](writer::MAX_BATCH) alerts) and stores them in one transaction: under load one commit serves
/// many requests; alone, a request waits for nobody. A request answered once stored ([`Store::create_all`]) is
/// stored in one transaction, whole or not at all; one answered once queued ([`Store::queue_all`]) in one part
/// per writer, each whole. PostgreSQL has [`PG_WRITERS`] writers, each with its own connection; SQLite has one.
#[derive(Clone, Debug)]
pub struct Store {
    database: Database,
    creations: Creations,
}

/// Longest a read waits for the requests queued before it (see [`Store::queue_all`]) to be stored: reached only
/// while the database cannot take them, when the read answers without them.
const SETTLE_LIMIT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
enum Database {
    /// PostgreSQL (`alerting.database.url` set).
    Postgres(PostgresStore),
    /// Embedded SQLite in the data directory.
    Sqlite(SqliteStore),
}

/// What a crash of PostgreSQL may lose of a write once it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Nothing: the commit waits until the write-ahead log is on disk (the server's `synchronous_commit`). For what
    /// a person or a script sends once.
    Flushed,
    /// The last few hundred milliseconds: the commit returns once the write-ahead log is written, before it is on
    /// disk (`synchronous_commit = off` for that transaction alone). For what a rule engine sends again every
    /// resend delay, so that its next resend restores what a crash lost. SQLite commits as it always does.
    Resent,
}

/// One alert to create, who creates it, and the notification to write with it.
#[derive(Debug)]
pub struct Creation {
    /// The new alert.
    pub alert: Alert,
    /// Who creates it: the actor of its `created` audit entry (see [`AuditEntry::created`]).
    pub actor: Option<String>,
    /// Its `created` notification, if it is notified.
    pub notification: Option<NewNotification>,
    /// When an open alert has its fingerprint: false leaves that alert as it is; true (an alert of a rule engine
    /// sent again) sets its title, description, annotations and end time from `alert`, and its `updated_at` to
    /// `alert.updated_at`, unless the repeat changes too little to be written (see [`repeat_writes`]).
    pub refresh: bool,
}

/// The share of a repeat's window (its end time less the time it was received) by which it may move the stored end
/// time of its alert without being written: an eighth (see [`repeat_writes`]). The same rule is written in SQL in
/// `pg_bulk`'s refresh statements, with the same divisor.
const REPEAT_END_SLACK: i32 = repeat_end_slack!();

/// Whether repeat `from` of a rule engine changes its open alert `open` enough to be written: its title,
/// description or annotations differ, it or the alert has no end time, or its end time is an eighth of its window
/// ([`REPEAT_END_SLACK`]) or more away from the stored one. A repeat that only moves the end a little (the other
/// replica of a highly available rule engine sending the same alert seconds later) leaves the alert as it is, its
/// `updated_at` too: the stored end is then at most an eighth of the window earlier than the last one sent
/// (30 s of Prometheus's 4 minutes), and a single rule engine's resends, which move the end by a quarter of the
/// window (Prometheus: one minute of four), are all written.
pub(crate) fn repeat_writes(open: &Alert, from: &Alert) -> bool {
    let moved_little = match (open.ends_at, from.ends_at) {
        (Some(stored), Some(sent)) => {
            (sent - stored).abs() < (sent - from.updated_at) / REPEAT_END_SLACK
        }
        _ => false,
    };
    !(moved_little
        && open.title == from.title
        && open.description == from.description
        && open.annotations == from.annotations)
}

/// Which open alerts a listing reads ([`Store::open_page`]); the default reads every one. It only narrows: the
/// caller still matches what it reads.
#[derive(Clone, Debug, Default)]
pub struct OpenSelection {
    /// Labels every alert read stores.
    pub labels: std::collections::BTreeMap<String, String>,
    /// An `alertname` every alert read stores, or, for an alert that stores none, its title (which it takes as its
    /// alertname).
    pub alertname: Option<String>,
}

/// One alert to create, as the store's SQL takes it.
type Item<'a> = &'a Creation;

/// One alert of a rule engine's request, for [`Store::apply_in_order`].
#[derive(Debug)]
pub enum Step {
    /// Create the alert, or find the open alert with its fingerprint (refreshed if the creation asks for it).
    Create(Box<Creation>),
    /// Resolve the open alert with this fingerprint, if there is one.
    Resolve(String),
}

/// What became of one [`Step`].
#[derive(Debug)]
pub enum Applied {
    /// The stored or existing alert, and whether it was created.
    Created(Alert, bool),
    /// The alert resolved; none if no alert with the fingerprint was open.
    Resolved(Option<Alert>),
}

/// What changing an alert writes: the changed alert, its audit entry, and its notification if it is notified.
pub type Changed = (Alert, AuditEntry, Option<NewNotification>);

/// What became of one creation.
enum CreationOutcome {
    /// Its alert was inserted.
    Created,
    /// An open alert had its fingerprint: that alert (refreshed, if the creation asked for it).
    Existing(Box<Alert>),
    /// An open alert had its fingerprint (and was refreshed, if the creation asked for it); not read back, as no
    /// requester waits for it.
    ExistingUnread,
}

impl CreationOutcome {
    /// The alert of a creation that had this outcome, where `sent` is the alert it created: the alert and whether
    /// it was created (an existing alert not read back is given as sent).
    fn into_alert(self, sent: Alert) -> (Alert, bool) {
        match self {
            CreationOutcome::Created => (sent, true),
            CreationOutcome::Existing(open) => (*open, false),
            CreationOutcome::ExistingUnread => (sent, false),
        }
    }
}

/// Calls the same method on whichever database the store uses, in a span of its own (see [`store_span`]).
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {{
        let span = store_span($self.describe(), stringify!($method));
        match &$self.database {
            Database::Postgres(store) => store.$method($($arg),*).instrument(span).await,
            Database::Sqlite(store) => store.$method($($arg),*).instrument(span).await,
        }
    }};
}

/// The span of one store call: a child of the span it is made in (a request, a delivery); none outside any span
/// (the outbox's polling would otherwise start a trace every poll) or when spans are not exported.
fn store_span(database: &'static str, method: &'static str) -> tracing::Span {
    if !gomon_runtime::telemetry::enabled() || tracing::Span::current().is_none() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "alerting.store",
        otel.name = %format_args!("store {method}"),
        otel.kind = "client",
        db.system.name = database,
        db.operation.name = method,
    )
}

impl Store {
    /// Opens the store `config` names and brings its schema up to date.
    pub async fn open(config: &DatabaseConfig) -> anyhow::Result<Store> {
        match config
            .postgres_url()
            .map_err(|error| error.within("alerting.database"))?
        {
            Some(url) => {
                let options = PgConnectOptions::from_str(&url)
                    .map_err(|error| anyhow::anyhow!("alerting.database.url: {error}"))?
                    .application_name("gomon-alerting")
                    .options([(
                        "statement_timeout",
                        format!("{}", config.statement_timeout.as_millis()),
                    )]);
                let options_for_writer = options.clone();
                let pool = PgPoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(config.acquire_timeout)
                    .connect_with(options)
                    .await?;
                sqlx::migrate!("migrations/postgres").run(&pool).await?;
                let store = PostgresStore::new(pool);
                let writers = (0..PG_WRITERS)
                    .map(|_| {
                        Writer::Postgres(
                            store.clone(),
                            Box::new(PgWriter::new(
                                options_for_writer.clone(),
                                config.acquire_timeout,
                            )),
                        )
                    })
                    .collect();
                Ok(Store::new(Database::Postgres(store), writers))
            }
            None => {
                std::fs::create_dir_all(&config.data_dir).map_err(|error| {
                    anyhow::anyhow!(
                        "alerting.database.data_dir: cannot create {}: {error}",
                        config.data_dir.display()
                    )
                })?;
                let options = SqliteConnectOptions::new()
                    .filename(config.data_dir.join("alerting.db"))
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true);
                // One connection: SQLite has one writer, and transactions never wait on each other.
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(config.acquire_timeout)
                    .connect_with(options)
                    .await?;
                sqlx::migrate!("migrations/sqlite").run(&pool).await?;
                let store = SqliteStore::new(pool);
                Ok(Store::new(
                    Database::Sqlite(store.clone()),
                    vec![Writer::Sqlite(store)],
                ))
            }
        }
    }

    fn new(database: Database, writers: Vec<Writer>) -> Store {
        Store {
            database,
            creations: writer::spawn(writers),
        }
    }

    /// A short description for logs: which database, never its credentials.
    pub fn describe(&self) -> &'static str {
        match self.database {
            Database::Postgres(_) => "postgresql",
            Database::Sqlite(_) => "sqlite",
        }
    }

    /// Applies `steps` in order in one transaction, or none of them: each later step sees what the earlier ones
    /// wrote. `resolve` makes the change of each open alert a [`Step::Resolve`] finds (under its row lock). Used
    /// for the requests the writers do not take: those that resolve alerts, or name one alert twice.
    pub async fn apply_in_order<F>(
        &self,
        steps: Vec<Step>,
        resolve: F,
        durability: Durability,
    ) -> Result<Vec<Applied>>
    where
        F: Fn(Alert) -> Result<Changed> + Send + Sync,
    {
        // After the creations queued before it: a resolution follows the creation it resolves.
        self.creations.settled(SETTLE_LIMIT).await;
        dispatch!(self.apply_in_order(steps, &resolve, durability))
    }

    /// Stores every creation (see [`Creation`]) in one transaction, or none: per creation, in order, the stored,
    /// existing or refreshed alert, and whether it was created. `read_back` false: an existing alert is given as
    /// sent, not read from the database (for a caller that uses only what was created). A writer's transaction
    /// commits as `durability` says only when every request in it says so too.
    pub async fn create_all(
        &self,
        creations: Vec<Creation>,
        durability: Durability,
        read_back: bool,
    ) -> Result<Vec<(Alert, bool)>> {
        if creations.is_empty() {
            return Ok(Vec::new());
        }
        self.creations
            .create(creations, durability, read_back)
            .instrument(store_span(self.describe(), "create_all"))
            .await
    }

    /// Queues `creations` (one request) for the writers and returns before they are stored. For what a rule
    /// engine sends again every resend delay. The alerts of one group always go to the same writer, so the request
    /// is stored in one part per writer it needs (each part in one transaction), and a group's requests in the
    /// order they were queued; `done` is told the outcome of each part. A part the database cannot take is queued
    /// again after a pause (doubling from one second up to 30), until it is stored or the store shuts down; `done`
    /// then has the error. When 2,048 alerts answered once queued are still waiting, or the last batch found the
    /// database unavailable, this returns once every part is stored instead (`done` is told of those stored; the
    /// error of one that was not is returned). Reads ([`Store::get`], [`Store::get_many`], [`Store::list`], the first
    /// [`Store::open_page`], [`Store::update_if_expired`], [`Store::apply_in_order`]) first wait until what was
    /// queued before them is stored.
    pub async fn queue_all(
        &self,
        creations: Vec<Creation>,
        durability: Durability,
        done: impl Fn(std::result::Result<Vec<(Alert, bool)>, NotStored>) + Send + Sync + 'static,
    ) -> Result<()> {
        if creations.is_empty() {
            return Ok(());
        }
        self.creations
            .queue(creations, durability, std::sync::Arc::new(done))
            .await
    }

    /// The alert with `id`, if any.
    pub async fn get(&self, id: Uuid) -> Result<Option<Alert>> {
        self.creations.settled(SETTLE_LIMIT).await;
        dispatch!(self.get(id))
    }

    /// The alerts of `ids` that exist, oldest first (at most a few thousand ids at once).
    pub async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<Alert>> {
        self.creations.settled(SETTLE_LIMIT).await;
        dispatch!(self.get_many(ids))
    }

    /// The page of alerts `filter` selects, and how many match in all.
    pub async fn list(&self, filter: &AlertFilter) -> Result<AlertPage> {
        self.creations.settled(SETTLE_LIMIT).await;
        dispatch!(self.list(filter))
    }

    /// Changes alert `id` atomically: `change` gets the current alert and returns the new one and the audit
    /// entry to write, or an error that aborts the transaction.
    pub async fn update<F>(&self, id: Uuid, change: F) -> Result<Alert>
    where
        F: FnOnce(Alert) -> Result<Changed> + Send,
    {
        dispatch!(self.update(id, change))
    }

    /// Changes alert `id` as [`Store::update`] does, but only if it is still open with an end time before `now`
    /// (checked under the row lock, so a re-send that moved the end time wins). `None`: it no longer is.
    pub async fn update_if_expired<F>(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        change: F,
    ) -> Result<Option<Alert>>
    where
        F: FnOnce(Alert) -> Result<Changed> + Send,
    {
        // After the repeats queued before it, which may have moved the end time.
        self.creations.settled(SETTLE_LIMIT).await;
        dispatch!(self.update_if_expired(id, now, change))
    }

    /// Deletes alert `id`, recording `entry` (built from the deleted alert) in the audit trail.
    pub async fn delete<F>(&self, id: Uuid, entry: F) -> Result<Alert>
    where
        F: FnOnce(&Alert) -> AuditEntry + Send,
    {
        dispatch!(self.delete(id, entry))
    }

    /// The audit trail of alert `id`, oldest first.
    pub async fn actions(&self, id: Uuid) -> Result<Vec<AuditEntry>> {
        dispatch!(self.actions(id))
    }

    /// The alerts from `source` that are not resolved, oldest first.
    pub async fn open_from(&self, source: &str) -> Result<Vec<Alert>> {
        dispatch!(self.open_from(source))
    }

    /// Up to `limit` open alerts created after `after` (an alert's `created_at` and `id`; `None`: from the first)
    /// that `selection` reads, oldest first: one page of a listing of the open alerts.
    pub async fn open_page(
        &self,
        after: Option<(DateTime<Utc>, Uuid)>,
        selection: &OpenSelection,
        limit: u32,
    ) -> Result<Vec<Alert>> {
        if after.is_none() {
            self.creations.settled(SETTLE_LIMIT).await;
        }
        dispatch!(self.open_page(after, selection, limit))
    }

    /// Up to `limit` open alerts with an end time, earliest end first: their ids and end times.
    pub async fn ending_first(&self, limit: u32) -> Result<Vec<(Uuid, DateTime<Utc>)>> {
        dispatch!(self.ending_first(limit))
    }

    /// Creates `silence`, or replaces the one with its id, and writes `action` to its audit trail, together.
    pub async fn upsert_silence(&self, silence: &Silence, action: &SilenceAction) -> Result<()> {
        dispatch!(self.upsert_silence(silence, action))
    }

    /// The audit trail of silence `id`, oldest first.
    pub async fn silence_actions(&self, id: Uuid) -> Result<Vec<SilenceAction>> {
        dispatch!(self.silence_actions(id))
    }

    /// Deletes the silences that ended before `before`, with their audit trails; returns how many.
    pub async fn delete_silences_ended_before(&self, before: DateTime<Utc>) -> Result<u64> {
        dispatch!(self.delete_silences_ended_before(before))
    }

    /// The silences ending after `ending_after` (all with `None`), in start order.
    pub async fn silences(&self, ending_after: Option<DateTime<Utc>>) -> Result<Vec<Silence>> {
        dispatch!(self.silences(ending_after))
    }

    /// The silence with `id`, if any.
    pub async fn silence(&self, id: Uuid) -> Result<Option<Silence>> {
        dispatch!(self.silence(id))
    }

    /// How many alerts are not resolved, per status and severity (pairs with none are absent).
    pub async fn open_counts(&self) -> Result<Vec<(Status, Severity, u64)>> {
        dispatch!(self.open_counts())
    }

    /// Takes up to `limit` due notifications of `receiver` that belong to no group for delivery, most urgent first
    /// (P1 to P4), then oldest, and never one whose alert has an earlier one pending for the same receiver; they are leased until
    /// `lease_until` (due again then if not finished).
    pub async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        receiver: &str,
    ) -> Result<Vec<Notification>> {
        dispatch!(self.claim_due(now, lease_until, limit, receiver))
    }

    /// Extends the lease on notification `id` to `until`, if this dispatcher still holds it (its lease still ends
    /// at `held`). False: the lease ran out and another dispatcher took the row.
    pub async fn renew_lease(
        &self,
        id: i64,
        held: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        dispatch!(self.renew_lease(id, held, until))
    }

    /// Records what became of notification `id`, if this dispatcher still holds it (its lease ends at `held`).
    /// False: another dispatcher took the row meanwhile, and its record stands.
    pub async fn finish_notification(
        &self,
        id: i64,
        held: DateTime<Utc>,
        record: &DeliveryRecord,
    ) -> Result<bool> {
        Ok(self.finish_notifications(&[(id, held)], record).await? == 1)
    }

    /// Records what became of the notifications `rows` (id, end of the lease this dispatcher holds) sent as one
    /// message, in one transaction: how many were still held.
    pub async fn finish_notifications(
        &self,
        rows: &[(i64, DateTime<Utc>)],
        record: &DeliveryRecord,
    ) -> Result<u64> {
        dispatch!(self.finish_notifications(rows, record))
    }

    /// The groups of `receiver` with a notification due at `now` (at most `limit`).
    pub async fn due_groups(
        &self,
        receiver: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<String>> {
        dispatch!(self.due_groups(receiver, now, limit))
    }

    /// When the last message of group `group_key` went to `receiver`.
    pub async fn group_sent_at(
        &self,
        receiver: &str,
        group_key: &str,
    ) -> Result<Option<DateTime<Utc>>> {
        dispatch!(self.group_sent_at(receiver, group_key))
    }

    /// Takes up to `limit` pending notifications of group `group_key` to `receiver` due by `horizon` (those that
    /// joined the group within its wait), oldest first, and never one whose alert has an earlier one pending for
    /// the receiver outside this claim; they are leased until `lease_until`.
    pub async fn claim_group(
        &self,
        receiver: &str,
        group_key: &str,
        horizon: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Notification>> {
        dispatch!(self.claim_group(receiver, group_key, horizon, lease_until, limit))
    }

    /// The alerts (and the routes that chose the receiver) whose `created` notification to `receiver` went out in
    /// the Slack message `ts` (a group's message names several), oldest first, at most 1,000.
    pub async fn message_alerts(
        &self,
        receiver: &str,
        ts: &str,
    ) -> Result<Vec<(Uuid, Option<i32>)>> {
        dispatch!(self.message_alerts(receiver, ts))
    }

    /// Channel and Slack timestamp of the delivered `created` notification of `alert_id` to `receiver`, to thread
    /// follow-ups.
    pub async fn thread_of(
        &self,
        alert_id: Uuid,
        receiver: &str,
    ) -> Result<Option<(String, String)>> {
        dispatch!(self.thread_of(alert_id, receiver))
    }

    /// The outbox rows `filter` selects, newest first, and how many match in all.
    pub async fn notifications(
        &self,
        filter: &NotificationFilter,
    ) -> Result<(Vec<Notification>, u64)> {
        dispatch!(self.notifications(filter))
    }

    /// How many notifications wait for delivery.
    pub async fn pending_notifications(&self) -> Result<i64> {
        dispatch!(self.pending_notifications())
    }

    /// How many notifications wait for delivery, by receiver (receivers with none left out).
    pub async fn pending_by_receiver(&self) -> Result<Vec<(String, i64)>> {
        dispatch!(self.pending_by_receiver())
    }

    /// Takes up to `limit` follow-ups due at `now`, earliest first, leasing them until `lease_until` (due again
    /// then if not finished).
    pub async fn claim_followups(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ClaimedFollowUp>> {
        dispatch!(self.claim_followups(now, lease_until, limit))
    }

    /// Finishes a claimed follow-up in one transaction: its next state (`None`: the row goes away), the
    /// notifications it causes and their audit entries; all of it only if this replica still holds the row.
    /// False: the lease ran out and another replica took it; nothing written.
    pub async fn finish_followup(
        &self,
        claimed: &ClaimedFollowUp,
        next: Option<NextFollowUp>,
        notifications: &[NewNotification],
        entries: &[AuditEntry],
    ) -> Result<bool> {
        dispatch!(self.finish_followup(claimed, next, notifications, entries))
    }

    /// Hands the pending rows of `receiver` chosen by `fallback`'s route, not handed over yet, over to the
    /// fallback receiver: a copy of each, due at `now`, and the row marked (and failed, when the fallback does not
    /// `deliver_late`). At most 1000 rows at once. Returns how many it handed over.
    pub async fn hand_over(
        &self,
        receiver: &str,
        fallback: &Fallback,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        dispatch!(self.hand_over(receiver, fallback, now))
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<()> {
        dispatch!(self.ping())
    }

    /// Waits for the requests queued for the writers to be stored (see [`Store::queue_all`]; the caller bounds the
    /// wait by its shutdown timeout) and the connections in use to be returned, then closes them all.
    pub async fn close(&self) {
        self.creations.settled(Duration::MAX).await;
        dispatch!(self.close())
    }
}

/// A row of `notify_followups` a replica has claimed (see [`Store::claim_followups`]): the alert's next
/// reminder to `receiver` and the route's next escalation step.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedFollowUp {
    /// The alert.
    pub alert_id: Uuid,
    /// The receiver the route notified (reminders go to it).
    pub receiver: String,
    /// The route (`None`: the route of `alerting.slack`).
    pub route: Option<i32>,
    /// Reminders sent so far.
    pub repeats: i32,
    /// What is next, and when.
    pub follow_up: FollowUp,
    /// The claim: the row's `due_at` while this replica holds it.
    pub held: DateTime<Utc>,
}

/// What a claimed follow-up becomes (see [`Store::finish_followup`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NextFollowUp {
    /// The next reminder and escalation step.
    pub follow_up: FollowUp,
    /// Reminders sent so far.
    pub repeats: i32,
    /// When the row is looked at again.
    pub due_at: DateTime<Utc>,
}

/// What became of one delivery attempt, as [`Store::finish_notification`] records it on the outbox row.
#[derive(Clone, Debug, PartialEq)]
pub enum DeliveryRecord {
    /// Slack accepted it.
    Sent {
        /// When.
        at: DateTime<Utc>,
        /// Channel it went to (Web API).
        channel: Option<String>,
        /// Slack's message timestamp (Web API).
        ts: Option<String>,
    },
    /// It failed; try again at `at`.
    Retry {
        /// When it is due again.
        at: DateTime<Utc>,
        /// Why it failed.
        error: String,
    },
    /// Given up.
    Failed {
        /// Why.
        error: String,
    },
    /// Not attempted (the circuit breaker is open, or shutdown): due again at `at`, no attempt counted.
    Released {
        /// When it is due again.
        at: DateTime<Utc>,
    },
}

/// Which outbox rows a listing returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NotificationFilter {
    /// Only rows in this state.
    pub status: Option<NotificationStatus>,
    /// Only rows of this alert.
    pub alert_id: Option<Uuid>,
    /// Only rows of this receiver.
    pub receiver: Option<String>,
    /// Page size.
    pub limit: u32,
    /// Rows to skip.
    pub offset: u64,
}
