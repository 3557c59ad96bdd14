//! The creation writers' path on PostgreSQL: each writer's own connection, and a batch of new alerts stored with
//! one statement (the batch travels as arrays) instead of one insert per alert.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::types::Json;
use sqlx::{Connection, FromRow as _, Row as _};
use uuid::Uuid;

use super::pg_copy::CopyRows;
use super::rows::AlertRow;
use super::sql::SELECT_ALERT;
use super::{CreationOutcome, Durability, Item, PostgresStore};
use crate::error::{Error, Result};
use crate::model::Alert;

/// The outbox rows (one per target receiver) and follow-ups of the new alerts of `$rows`, a row source whose rows
/// have `new.id`, `new.created_at`, `new.notification` and `new.targets`: two data-modifying `WITH` items, named
/// `outbox` and `followups`.
macro_rules! notify_new {
    ($rows:expr) => {
        concat!(
            "outbox AS ( \
               INSERT INTO notifications (alert_id, event, status, payload, attempts, next_attempt_at, created_at, \
                 receiver, route, group_key) \
               SELECT new.id, 'created', 'pending', new.notification, 0, (target->>'due_at')::timestamptz, \
                 new.created_at, target->>'receiver', (target->>'route')::integer, target->>'group_key' \
               FROM ",
            $rows,
            " CROSS JOIN LATERAL jsonb_array_elements(new.targets) AS target \
               WHERE new.notification IS NOT NULL \
             ), followups AS ( \
               INSERT INTO notify_followups (alert_id, receiver, route, repeat_at, escalate_at, step, due_at) \
               SELECT new.id, target->>'receiver', (target->>'route')::integer, (target->>'repeat_at')::timestamptz, \
                 (target->>'escalate_at')::timestamptz, 0, \
                 LEAST((target->>'repeat_at')::timestamptz, (target->>'escalate_at')::timestamptz) \
               FROM ",
            $rows,
            " CROSS JOIN LATERAL jsonb_array_elements(new.targets) AS target \
               WHERE new.notification IS NOT NULL \
                 AND (target->>'repeat_at' IS NOT NULL OR target->>'escalate_at' IS NOT NULL) \
             )"
        )
    };
}

/// The columns a new alert is written with, by [`PG_BULK_CREATE`] and [`PG_COPY_ALERTS`] alike (in this order:
/// [`copy_rows`] writes its fields so, [`COPY_ALERT_FIELDS`] of them).
macro_rules! new_alert_columns {
    () => {
        "id, alert_group_id, fingerprint, source, severity, status, title, description, namespace, labels, \
         annotations, jaeger_trace_id, created_at, updated_at, ends_at, created_by"
    };
}

/// Every alert of a batch (with its `created` audit entry: see [`crate::model::AuditEntry::created`]) and its notification
/// (one outbox row per target receiver) in one PostgreSQL statement: the batch travels as arrays,
/// so the statement (prepared once) is the same whatever the batch size. Returns the ids it inserted; an alert
/// whose fingerprint already has an open alert (in the table, or earlier in the batch) is skipped.
const PG_BULK_CREATE: &str = concat!(
    "WITH new AS ( \
       SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
         $8::text[], $9::jsonb[], $10::jsonb[], $11::text[], $12::timestamptz[], $13::text[], $14::jsonb[], \
         $15::timestamptz[], $16::jsonb[]) \
       AS t(id, alert_group_id, fingerprint, source, severity, title, description, namespace, labels, annotations, \
         jaeger_trace_id, created_at, created_by, notification, ends_at, targets) \
     ), inserted AS ( \
       INSERT INTO alerts_active (",
    new_alert_columns!(),
    ") \
       SELECT id, alert_group_id, fingerprint, source, severity, 'firing', title, description, namespace, labels, \
         annotations, jaeger_trace_id, created_at, created_at, ends_at, created_by FROM new \
       ON CONFLICT (alert_group_id) WHERE status <> 'resolved' DO NOTHING \
       RETURNING id \
     ), ",
    notify_new!("new JOIN inserted USING (id)"),
    " SELECT id FROM inserted"
);

/// The alerts of a batch none of which has an open alert of its group, as [`PG_BULK_CREATE`] stores them but
/// without looking for one: PostgreSQL's `COPY` (binary, written by [`copy_rows`]) writes them with a quarter less
/// of its CPU than the `INSERT` with its `ON CONFLICT` probe of the open groups and the batch's arrays. An alert
/// whose group is open after all fails the whole copy (the unique index on open groups), which is then rolled back
/// and the batch stored with [`PG_BULK_CREATE`].
const PG_COPY_ALERTS: &str = concat!(
    "COPY alerts_active (",
    new_alert_columns!(),
    ") FROM STDIN (FORMAT binary)"
);

/// Fields of each row of [`PG_COPY_ALERTS`]: the columns of `new_alert_columns`.
const COPY_ALERT_FIELDS: i16 = 16;

/// The notifications of alerts stored by [`PG_COPY_ALERTS`], as [`PG_BULK_CREATE`] writes them.
const PG_BULK_NOTIFY: &str = concat!(
    "WITH new AS ( \
       SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::jsonb[], $4::jsonb[]) \
       AS t(id, created_at, notification, targets) \
     ), ",
    notify_new!("new"),
    " SELECT 1"
);

/// Batches a writer stores without trying [`PG_COPY_ALERTS`] after a copy found an open group: alerts opened
/// elsewhere (another replica; this one before a restart) cost one failed copy in this many batches at most.
const COPY_PAUSE: u32 = 64;

/// The creation writer's own PostgreSQL connection, opened on first use and after any error.
pub(super) struct PgWriter {
    options: PgConnectOptions,
    connect_timeout: Duration,
    connection: Option<PgConnection>,
    /// Whether the connection's session commits with `synchronous_commit = off` (see [`Durability::Resent`]).
    resent: bool,
    /// Groups whose alert this writer last found open (created, refreshed or found): a repeat of one is refreshed
    /// first, without trying to insert it. Only a hint: an alert resolved since (by a person, its rule engine or
    /// its end time) is not refreshed, and the repeat is then stored as any other creation. The new alerts of a
    /// batch whose groups are not in it are copied ([`PG_COPY_ALERTS`]).
    known_open: KnownOpen,
    /// Batches left to store without trying a copy (see [`COPY_PAUSE`]).
    copy_pause: u32,
}

/// Groups in each of the two generations of [`KnownOpen`]: about 2 MB each.
const KNOWN_OPEN_GENERATION: usize = 65_536;

/// The groups a writer last found open (see [`PgWriter::known_open`]), in two generations of at most
/// [`KNOWN_OPEN_GENERATION`] groups: when the newer is full it becomes the older, and the older is dropped. A group
/// stored within the last generation stays known, whatever number of groups came before it: when the whole set
/// was cleared at its bound instead, each clear made the repeats of the groups just forgotten look new, their
/// copy failed on the open group, and the writer inserted its next [`COPY_PAUSE`] batches.
#[derive(Default)]
struct KnownOpen {
    newer: HashSet<Uuid>,
    older: HashSet<Uuid>,
}

impl KnownOpen {
    fn contains(&self, group: &Uuid) -> bool {
        self.newer.contains(group) || self.older.contains(group)
    }

    fn insert(&mut self, group: Uuid) {
        if self.newer.len() >= KNOWN_OPEN_GENERATION {
            std::mem::swap(&mut self.newer, &mut self.older);
            self.newer.clear();
        }
        self.newer.insert(group);
    }

    fn remove(&mut self, group: &Uuid) {
        self.newer.remove(group);
        self.older.remove(group);
    }
}

impl PgWriter {
    pub(super) fn new(options: PgConnectOptions, connect_timeout: Duration) -> Self {
        Self {
            options,
            connect_timeout,
            connection: None,
            resent: false,
            known_open: KnownOpen::default(),
            copy_pause: 0,
        }
    }

    /// The connection, its session committing as `durability` says: `synchronous_commit` is set only when it
    /// changes, so a run of batches alike costs no round trip for it.
    async fn connection_for(&mut self, durability: Durability) -> Result<&mut PgConnection> {
        let resent = durability == Durability::Resent;
        if self.connection.is_none() {
            // A new session commits as the server is configured.
            self.resent = false;
        }
        if self.resent != resent {
            let set = if resent {
                "SET synchronous_commit = off"
            } else {
                "RESET synchronous_commit"
            };
            sqlx::query(set)
                .execute(&mut *self.connection().await?)
                .await?;
            self.resent = resent;
        }
        self.connection().await
    }

    async fn connection(&mut self) -> Result<&mut PgConnection> {
        if self.connection.is_none() {
            let connect = PgConnection::connect_with(&self.options);
            let connection = tokio::time::timeout(self.connect_timeout, connect)
                .await
                .map_err(|_| Error::Unavailable("timed out connecting to the database".into()))??;
            self.connection = Some(connection);
        }
        self.connection
            .as_mut()
            .ok_or_else(|| Error::Internal("writer connection missing".into()))
    }
}

/// Whether the repeat `u` changes too little to write the open alert `a` (see [`super::repeat_writes`], the same
/// rule in Rust: the same title, description and annotations, and an end time less than an eighth of the repeat's
/// window away from the stored one).
macro_rules! repeat_unchanged {
    () => {
        concat!(
            "COALESCE(a.title = u.new_title AND a.description IS NOT DISTINCT FROM u.new_description \
             AND a.annotations = u.new_annotations \
             AND a.ends_at > u.new_ends_at - (u.new_ends_at - u.new_updated_at) / ",
            repeat_end_slack!(),
            " AND a.ends_at < u.new_ends_at + (u.new_ends_at - u.new_updated_at) / ",
            repeat_end_slack!(),
            ", false)"
        )
    };
}

/// Refreshes the open alerts of the given groups (fingerprints) from a repeat of their rule engine (see
/// [`super::Creation::refresh`]), returning those it found open: refreshed, or left as they are when the repeat
/// changes too little (`repeat_unchanged`). `$lookup` finds each repeat's open alert (`target`: the alert's id as
/// `open_id`, whether it is left as it is as `unchanged`, and the repeat's columns), then each one to write is
/// updated by its key. An alert changed later than the repeat was received (a later repeat another writer stored
/// first) is left as it is, and read back by the lookup of the alerts not refreshed. `$returning` is what each
/// alert found is returned as, in both of its forms (refreshed, and as stored).
macro_rules! pg_bulk_refresh {
    ($lookup:expr, $returning:expr) => { concat!(
    "WITH target AS (", $lookup, "), \
     refreshed AS ( \
       UPDATE alerts_active SET title = t.new_title, description = t.new_description, \
         annotations = t.new_annotations, ends_at = t.new_ends_at, updated_at = t.new_updated_at \
       FROM target AS t WHERE id = t.open_id AND NOT t.unchanged AND status IS DISTINCT FROM 'resolved' \
         AND updated_at <= t.new_updated_at \
       RETURNING ", $returning, " \
     ) \
     SELECT ", $returning, " FROM refreshed \
     UNION ALL SELECT ", $returning, " FROM alerts_active WHERE id IN (SELECT open_id FROM target WHERE unchanged)"
    ) };
}

/// The batch of repeats, as `u`.
macro_rules! repeats {
    () => {
        "unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::timestamptz[], $6::timestamptz[]) \
         AS u(new_group_id, new_title, new_description, new_annotations, new_ends_at, new_updated_at)"
    };
}

/// `pg_bulk_refresh`'s lookup for a few repeats: `alert_group_id = ANY($1)` bounds the scan of the open alerts by
/// the batch, whatever the statistics say: joined to the `unnest` alone, a plan made while the table had no open
/// alert (after a quiet night, say) walks every open alert once per row of the batch. The generic plan PostgreSQL
/// settles on after five runs of the prepared statement still compares every alert found with every row of the
/// batch, which is cheap only for a few.
macro_rules! lookup_small {
    () => {
        concat!(
            "SELECT a.id AS open_id, ",
            repeat_unchanged!(),
            " AS unchanged, u.* FROM ",
            repeats!(),
            " JOIN alerts_active AS a ON a.alert_group_id = u.new_group_id \
             WHERE a.alert_group_id = ANY($1) AND a.status <> 'resolved'"
        )
    };
}

/// Most repeats refreshed with `lookup_small`; more take `lookup_many`, whose plan costs more to start and less
/// per row.
const SMALL_REFRESH: usize = 16;

/// `pg_bulk_refresh`'s lookup for many repeats: each row of the batch finds its open alert through a `LATERAL`
/// lookup of the unique index on open groups, two index lookups per row with the update whatever the statistics
/// say (3 ms for 256 repeats, where the generic plan of the small form takes 23 ms). The update's own check that
/// the alert is still open is written `IS DISTINCT FROM`, which the partial indexes on open alerts do not match:
/// with `<>`, a plan made while the table had no open alert scans every open alert instead of looking each one up.
macro_rules! lookup_many {
    () => {
        concat!(
            "SELECT found.open_id, found.unchanged, u.* FROM ",
            repeats!(),
            " CROSS JOIN LATERAL (SELECT a.id AS open_id, ",
            repeat_unchanged!(),
            " AS unchanged FROM alerts_active AS a \
             WHERE a.alert_group_id = u.new_group_id AND a.status <> 'resolved' LIMIT 1) AS found"
        )
    };
}

/// The statements refreshing repeats (see `pg_bulk_refresh`), by how many they refresh and whether they read the
/// alerts back or return their groups alone.
const PG_BULK_REFRESHES: [[&str; 2]; 2] = [
    [
        pg_bulk_refresh!(lookup_small!(), "alert_group_id"),
        pg_bulk_refresh!(lookup_small!(), alert_columns!()),
    ],
    [
        pg_bulk_refresh!(lookup_many!(), "alert_group_id"),
        pg_bulk_refresh!(lookup_many!(), alert_columns!()),
    ],
];

/// Where the notification of `creation` goes, as [`notify_new`] reads it: one document per target receiver.
fn targets(creation: Item<'_>) -> Json<Vec<serde_json::Value>> {
    let targets = creation
        .notification
        .as_ref()
        .map_or(&[][..], |n| &n.targets);
    Json(
        targets
            .iter()
            .map(|t| {
                let follow_up = t.follow_up.as_ref();
                serde_json::json!({
                    "receiver": t.receiver,
                    "route": t.route,
                    "due_at": t.due_at(creation.alert.created_at),
                    "group_key": t.group.as_ref().map(|g| &g.key),
                    "repeat_at": follow_up.and_then(|f| f.repeat_at),
                    "escalate_at": follow_up.and_then(|f| f.escalate_at),
                })
            })
            .collect(),
    )
}

/// The rows of [`PG_COPY_ALERTS`] for `batch`, their fields in the order of `new_alert_columns`.
fn copy_rows(batch: &[Item<'_>]) -> Result<Vec<u8>> {
    let mut rows = CopyRows::new();
    for creation in batch {
        let alert = &creation.alert;
        rows.row(COPY_ALERT_FIELDS)
            .uuid(alert.id)?
            .uuid(alert.alert_group_id)?
            .text(Some(&alert.fingerprint))?
            .text(Some(&alert.source))?
            .text(Some(alert.severity.as_str()))?
            .text(Some(crate::model::Status::Firing.as_str()))?
            .text(Some(&alert.title))?
            .text(alert.description.as_deref())?
            .text(alert.namespace.as_deref())?
            .jsonb(&alert.labels)?
            .jsonb(&alert.annotations)?
            .text(alert.jaeger_trace_id.as_deref())?
            .timestamp(Some(alert.created_at))?
            .timestamp(Some(alert.created_at))?
            .timestamp(alert.ends_at)?
            .text(creation.actor.as_deref())?;
    }
    Ok(rows.finish())
}

/// The creations of `batch` whose groups are not known open (see [`PgWriter::known_open`]), to be copied
/// ([`PG_COPY_ALERTS`]), but for those whose group is twice in the batch: only the insert's `ON CONFLICT`
/// resolves those.
fn new_groups<'a>(batch: &[Item<'a>], known_open: &KnownOpen) -> Vec<Item<'a>> {
    let mut seen: HashMap<Uuid, usize> = HashMap::with_capacity(batch.len());
    for creation in batch {
        *seen.entry(creation.alert.alert_group_id).or_default() += 1;
    }
    batch
        .iter()
        .copied()
        .filter(|c| {
            let group = c.alert.alert_group_id;
            seen.get(&group) == Some(&1) && !known_open.contains(&group)
        })
        .collect()
}

/// Whether `error` is PostgreSQL's unique violation.
fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

impl PostgresStore {
    /// Stores `batch` (fresh creations of distinct groups) with [`PG_COPY_ALERTS`], and their notifications with
    /// [`PG_BULK_NOTIFY`]; the ids it stored, or `None` when an alert's group was open (the copy then failed and
    /// wrote nothing: `connection`'s transaction, if any, must be rolled back). Two statements when some creation
    /// is notified: the caller runs them in a transaction.
    async fn copy_new(
        connection: &mut PgConnection,
        batch: &[Item<'_>],
    ) -> Result<Option<HashSet<Uuid>>> {
        let rows = copy_rows(batch)?;
        let mut copy = connection.copy_in_raw(PG_COPY_ALERTS).await?;
        copy.send(rows).await?;
        match copy.finish().await {
            Ok(_) => {}
            Err(error) if is_unique_violation(&error) => return Ok(None),
            Err(error) => return Err(error.into()),
        }
        let notified: Vec<Item<'_>> = batch
            .iter()
            .copied()
            .filter(|c| c.notification.is_some())
            .collect();
        if !notified.is_empty() {
            sqlx::query(PG_BULK_NOTIFY)
                .bind(notified.iter().map(|c| c.alert.id).collect::<Vec<_>>())
                .bind(
                    notified
                        .iter()
                        .map(|c| c.alert.created_at)
                        .collect::<Vec<_>>(),
                )
                .bind(
                    notified
                        .iter()
                        .map(|c| c.notification.as_ref().map(|n| Json(&n.payload)))
                        .collect::<Vec<_>>(),
                )
                .bind(notified.iter().map(|c| targets(c)).collect::<Vec<_>>())
                .execute(&mut *connection)
                .await?;
        }
        Ok(Some(batch.iter().map(|c| c.alert.id).collect()))
    }

    /// Runs [`PG_BULK_CREATE`] for `batch` on `connection`; the ids it inserted.
    async fn bulk_insert(
        connection: &mut PgConnection,
        batch: &[Item<'_>],
    ) -> Result<HashSet<Uuid>> {
        let alerts = || batch.iter().map(|c| &c.alert);
        let text = |f: fn(&Alert) -> Option<&str>| alerts().map(f).collect::<Vec<_>>();
        Ok(sqlx::query_scalar::<_, Uuid>(PG_BULK_CREATE)
            .bind(alerts().map(|a| a.id).collect::<Vec<_>>())
            .bind(alerts().map(|a| a.alert_group_id).collect::<Vec<_>>())
            .bind(text(|a| Some(&a.fingerprint)))
            .bind(text(|a| Some(&a.source)))
            .bind(text(|a| Some(a.severity.as_str())))
            .bind(text(|a| Some(&a.title)))
            .bind(text(|a| a.description.as_deref()))
            .bind(text(|a| a.namespace.as_deref()))
            .bind(alerts().map(|a| Json(&a.labels)).collect::<Vec<_>>())
            .bind(alerts().map(|a| Json(&a.annotations)).collect::<Vec<_>>())
            .bind(text(|a| a.jaeger_trace_id.as_deref()))
            .bind(alerts().map(|a| a.created_at).collect::<Vec<_>>())
            .bind(batch.iter().map(|c| c.actor.as_deref()).collect::<Vec<_>>())
            .bind(
                batch
                    .iter()
                    .map(|c| c.notification.as_ref().map(|n| Json(&n.payload)))
                    .collect::<Vec<_>>(),
            )
            .bind(alerts().map(|a| a.ends_at).collect::<Vec<_>>())
            .bind(batch.iter().map(|c| targets(c)).collect::<Vec<_>>())
            .fetch_all(connection)
            .await?
            .into_iter()
            .collect())
    }

    /// Stores a batch of creations on the writer's connection, each request whole (see [`Self::bulk_in`] for when
    /// that takes a transaction): new alerts copied ([`PG_COPY_ALERTS`]) or inserted with one statement (see
    /// [`PG_BULK_CREATE`]); the repeats it skipped refreshed with one more (see `pg_bulk_refresh`) or looked up;
    /// the rare one whose duplicate was resolved in between through the general path.
    /// `read_back` false: no requester asks for the alerts that existed, which are not read back
    /// ([`CreationOutcome::ExistingUnread`]). After any error the connection is dropped, and the next batch opens a
    /// new one.
    pub(super) async fn create_batch_bulk(
        &self,
        writer: &mut PgWriter,
        batch: &[Item<'_>],
        whole: bool,
        durability: Durability,
        read_back: bool,
    ) -> Result<Vec<Result<CreationOutcome>>> {
        let known_open = std::mem::take(&mut writer.known_open);
        let mut copy_pause = writer.copy_pause.saturating_sub(1);
        let result = match writer.connection_for(durability).await {
            Ok(connection) => {
                let copy = if copy_pause == 0 {
                    new_groups(batch, &known_open)
                } else {
                    Vec::new()
                };
                let stored = Self::bulk_in(connection, batch, whole, read_back, &known_open, &copy);
                stored.await.map(|(outcomes, copied)| {
                    if !copied {
                        tracing::debug!(
                            alerts = copy.len(),
                            "a copy of new alerts found an open group; the next batches are inserted"
                        );
                        copy_pause = COPY_PAUSE;
                    }
                    outcomes
                })
            }
            Err(error) => Err(error),
        };
        writer.known_open = known_open;
        writer.copy_pause = copy_pause;
        match &result {
            Ok(outcomes) => {
                for (creation, outcome) in batch.iter().zip(outcomes) {
                    let group = creation.alert.alert_group_id;
                    if outcome.is_ok() {
                        writer.known_open.insert(group);
                    } else {
                        writer.known_open.remove(&group);
                    }
                }
            }
            Err(_) => writer.connection = None,
        }
        result
    }

    /// [`Self::create_batch_bulk`] on `connection`, copying `copy` (creations of `batch`; see [`new_groups`])
    /// first; false with the outcomes when that copy found an open group and the batch was stored without it.
    /// `whole` (some request has several alerts): one transaction, but for a batch copied whole with nothing to
    /// notify, whose copy alone stores it. `whole` false (every request of the batch has one alert): no
    /// transaction, the copy (with its notifications), the insert and the refresh of what it skipped each commit
    /// on their own; a request of one alert is still stored whole, as no two statements write its alert.
    async fn bulk_in(
        connection: &mut PgConnection,
        batch: &[Item<'_>],
        whole: bool,
        read_back: bool,
        known_open: &KnownOpen,
        copy: &[Item<'_>],
    ) -> Result<(Vec<Result<CreationOutcome>>, bool)> {
        // The statement writes what a new alert has; anything else takes the general path.
        let fresh = batch.iter().all(|c| {
            let alert = &c.alert;
            alert.status == crate::model::Status::Firing
                && alert.created_at == alert.updated_at
                && c.notification.as_ref().is_none_or(|n| {
                    n.alert_id == alert.id
                        && n.event == "created"
                        && n.created_at == alert.created_at
                })
        });
        if !fresh {
            let mut tx = connection.begin().await?;
            let results = Self::create_in(&mut tx, batch).await?;
            tx.commit().await?;
            return Ok((results, true));
        }
        if whole {
            // A batch copied whole with nothing to notify is one statement, stored whole without a transaction
            // around it; when the copy finds an open group, the batch is inserted in one as any other.
            let alone = copy.len() == batch.len() && copy.iter().all(|c| c.notification.is_none());
            if alone {
                let copied = Self::copy_new(connection, copy).await?;
                if copied.is_some() {
                    return Ok((
                        batch.iter().map(|_| Ok(CreationOutcome::Created)).collect(),
                        true,
                    ));
                }
                let mut tx = connection.begin().await?;
                let results = Self::bulk_store(&mut tx, batch, read_back, known_open, None).await?;
                tx.commit().await?;
                return Ok((results, false));
            }
            // The copy comes first, so that when it fails the transaction has nothing else to lose.
            let mut tx = connection.begin().await?;
            let mut copied = Some(HashSet::new());
            if !copy.is_empty() {
                copied = Self::copy_new(&mut tx, copy).await?;
                if copied.is_none() {
                    tx.rollback().await?;
                    tx = connection.begin().await?;
                }
            }
            let results =
                Self::bulk_store(&mut tx, batch, read_back, known_open, copied.as_ref()).await?;
            tx.commit().await?;
            return Ok((results, copied.is_some()));
        }
        // Every request has one alert: each statement stores whole requests, so none needs a transaction of its
        // own, and each commits on its own; a copy with notifications stores them in the same transaction.
        let mut copied = Some(HashSet::new());
        if copy.iter().any(|c| c.notification.is_some()) {
            let mut tx = connection.begin().await?;
            copied = Self::copy_new(&mut tx, copy).await?;
            if copied.is_some() {
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
        } else if !copy.is_empty() {
            copied = Self::copy_new(connection, copy).await?;
        }
        let results =
            Self::bulk_store(connection, batch, read_back, known_open, copied.as_ref()).await?;
        Ok((results, copied.is_some()))
    }

    /// Stores a batch of fresh creations, some of which may have been `copied` already (their ids): the repeats of
    /// groups known open refreshed first (see [`PgWriter::known_open`]), then the rest inserted with
    /// [`PG_BULK_CREATE`], and what it skipped refreshed or looked up (see [`Self::after_insert`]).
    async fn bulk_store(
        connection: &mut PgConnection,
        batch: &[Item<'_>],
        read_back: bool,
        known_open: &KnownOpen,
        copied: Option<&HashSet<Uuid>>,
    ) -> Result<Vec<Result<CreationOutcome>>> {
        let is_copied = |c: &Item<'_>| copied.is_some_and(|ids| ids.contains(&c.alert.id));
        let known: Vec<Item<'_>> = batch
            .iter()
            .copied()
            .filter(|c| c.refresh && known_open.contains(&c.alert.alert_group_id))
            .collect();
        let mut open = HashMap::new();
        Self::refresh(connection, &known, read_back, &mut open).await?;
        let rest: Vec<Item<'_>> = batch
            .iter()
            .copied()
            .filter(|c| !open.contains_key(&c.alert.alert_group_id) && !is_copied(c))
            .collect();
        let mut inserted = if rest.is_empty() {
            HashSet::new()
        } else {
            Self::bulk_insert(connection, &rest).await?
        };
        inserted.extend(copied.into_iter().flatten());
        Self::after_insert(connection, batch, &inserted, read_back, open).await
    }

    /// Refreshes the open alerts of the repeats of `items` (the last of each fingerprint: `items` is in
    /// fingerprint order, each request's own order kept, so that the last word stands) with one statement (see
    /// `pg_bulk_refresh`), and adds those it found open (refreshed, or left as they are when a repeat changes too
    /// little) to `open` (see [`Self::read_open`]).
    async fn refresh(
        connection: &mut PgConnection,
        items: &[Item<'_>],
        read_back: bool,
        open: &mut HashMap<Uuid, Option<Alert>>,
    ) -> Result<()> {
        let mut refresh: Vec<Item<'_>> = Vec::new();
        for creation in items.iter().filter(|c| c.refresh) {
            match refresh.last_mut() {
                Some(last) if last.alert.fingerprint == creation.alert.fingerprint => {
                    *last = creation
                }
                _ => refresh.push(creation),
            }
        }
        if refresh.is_empty() {
            return Ok(());
        }
        let alerts = || refresh.iter().map(|c| &c.alert);
        let statement =
            PG_BULK_REFRESHES[usize::from(refresh.len() > SMALL_REFRESH)][usize::from(read_back)];
        let query = sqlx::query(statement)
            .bind(alerts().map(|a| a.alert_group_id).collect::<Vec<_>>())
            .bind(alerts().map(|a| a.title.as_str()).collect::<Vec<_>>())
            .bind(
                alerts()
                    .map(|a| a.description.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(alerts().map(|a| Json(&a.annotations)).collect::<Vec<_>>())
            .bind(alerts().map(|a| a.ends_at).collect::<Vec<_>>())
            .bind(alerts().map(|a| a.updated_at).collect::<Vec<_>>());
        Self::read_open(query.fetch_all(&mut *connection).await?, read_back, open)
    }

    /// Adds the open alerts of `rows` to `open`, by group: read back from their columns, or (`read_back` false)
    /// their groups alone.
    fn read_open(
        rows: Vec<PgRow>,
        read_back: bool,
        open: &mut HashMap<Uuid, Option<Alert>>,
    ) -> Result<()> {
        for row in rows {
            if read_back {
                let alert = Alert::try_from(AlertRow::from_row(&row)?)?;
                open.insert(alert.alert_group_id, Some(alert));
            } else {
                open.insert(row.try_get("alert_group_id")?, None);
            }
        }
        Ok(())
    }

    /// The outcome of each creation of `batch` once [`PG_BULK_CREATE`] inserted `inserted`: the repeats it skipped
    /// refreshed with one statement (see `pg_bulk_refresh`) or looked up, and the rare one whose duplicate was
    /// resolved in between stored through the general path. `connection` is in the batch's transaction when some
    /// request has several alerts; otherwise (one alert per request) each statement commits on its own.
    async fn after_insert(
        connection: &mut PgConnection,
        batch: &[Item<'_>],
        inserted: &HashSet<Uuid>,
        read_back: bool,
        mut open: HashMap<Uuid, Option<Alert>>,
    ) -> Result<Vec<Result<CreationOutcome>>> {
        if inserted.len() == batch.len() {
            return Ok(batch.iter().map(|_| Ok(CreationOutcome::Created)).collect());
        }
        let skipped: Vec<Item<'_>> = batch
            .iter()
            .copied()
            .filter(|c| {
                !inserted.contains(&c.alert.id) && !open.contains_key(&c.alert.alert_group_id)
            })
            .collect();
        Self::refresh(connection, &skipped, read_back, &mut open).await?;
        let unknown: Vec<Uuid> = skipped
            .iter()
            .map(|c| c.alert.alert_group_id)
            .filter(|group| !open.contains_key(group))
            .collect();
        if !unknown.is_empty() {
            let statement = if read_back {
                format!("{SELECT_ALERT} WHERE alert_group_id = ANY($1) AND status <> 'resolved'")
            } else {
                "SELECT alert_group_id FROM alerts_active WHERE alert_group_id = ANY($1) \
                 AND status <> 'resolved'"
                    .to_owned()
            };
            let rows = sqlx::query(&statement)
                .bind(&unknown)
                .fetch_all(&mut *connection)
                .await?;
            Self::read_open(rows, read_back, &mut open)?;
        }
        let mut results = Vec::with_capacity(batch.len());
        for creation in batch {
            let alert = &creation.alert;
            if inserted.contains(&alert.id) {
                results.push(Ok(CreationOutcome::Created));
            } else if let Some(existing) = open.get(&alert.alert_group_id) {
                results.push(Ok(match existing {
                    Some(existing) => CreationOutcome::Existing(Box::new(existing.clone())),
                    None => CreationOutcome::ExistingUnread,
                }));
            } else {
                // A savepoint within the batch's transaction, or a transaction of its own.
                let mut tx = connection.begin().await?;
                let mut one = Self::create_in(&mut tx, std::slice::from_ref(creation)).await?;
                tx.commit().await?;
                results.push(one.pop().unwrap_or_else(|| {
                    Err(Error::Internal("empty result for a one-alert batch".into()))
                }));
            }
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_open_groups_keep_the_last_generation_and_are_bounded() {
        const G: usize = KNOWN_OPEN_GENERATION;
        let groups: Vec<Uuid> = (0..=2 * G).map(|_| Uuid::new_v4()).collect();
        let mut known = KnownOpen::default();
        for group in &groups[..=G] {
            known.insert(*group);
        }
        // The first generation was full when the next group came: it is the older one now, still known.
        assert!(groups[..=G].iter().all(|g| known.contains(g)));
        for group in &groups[G + 1..] {
            known.insert(*group);
        }
        // A second rotation dropped the first generation, and only it.
        assert!(groups[..G].iter().all(|g| !known.contains(g)));
        assert!(groups[G..].iter().all(|g| known.contains(g)));
        assert!(known.newer.len() + known.older.len() <= 2 * G);
        // A group found resolved is forgotten from either generation.
        known.remove(&groups[G]);
        known.remove(&groups[2 * G]);
        assert!(!known.contains(&groups[G]) && !known.contains(&groups[2 * G]));
    }
}
