//! The alerting service: validation, deduplication, lifecycle and metrics, over a [`Store`].
//!
//! Every way an alert arrives (the REST API, the Alertmanager API of rule engines, the Kubernetes pod watcher) goes
//! through here.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::Notification;
use crate::model::{
    self, Alert, AlertFilter, AlertPage, AuditEntry, Change, NewAlert, NewNotification, OpenCounts,
    Severity, Status, Target,
};
use crate::notify::policy::Policy;
use crate::rule_engines::{AlertmanagerConfig, GrafanaAlert, PostableAlert, Rejection, RuleAlert};
use crate::silence::{PostableSilence, Silence, SilenceAction, alert_labels};
use crate::store::{
    Applied, Changed, ClaimedFollowUp, Creation, Durability, NextFollowUp, NotStored,
    NotificationFilter, Step, Store,
};
use gomon_runtime::metrics::must;

/// The metrics the service keeps; their names are a contract with the dashboards and alert rules.
#[derive(Clone, Debug)]
struct Metrics {
    created: IntCounterVec,
    invalid: IntCounterVec,
    not_stored: IntCounter,
    active: IntGaugeVec,
    outbox_pending: IntGauge,
}

impl Metrics {
    fn new(registry: &Registry) -> Self {
        let created = must(IntCounterVec::new(
            Opts::new(
                "alerting_alerts_created_total",
                "Alerts created (not counting deduplicated repeats).",
            ),
            &["severity", "source"],
        ));
        let invalid = must(IntCounterVec::new(
            Opts::new(
                "alerting_alerts_invalid_total",
                "Alerts of rule engines and webhooks not stored because they are invalid, by reason.",
            ),
            &["reason"],
        ));
        let not_stored = must(IntCounter::new(
            "alerting_alerts_queued_not_stored_total",
            "Alerts of rule engines answered once queued that were then not stored (refused by the database, or \
             still waiting for it at shutdown); the rule engine's next resend brings them again.",
        ));
        let active = must(IntGaugeVec::new(
            Opts::new(
                "alerting_active_alerts",
                "Alerts not resolved, by severity, as counted in the store.",
            ),
            &["severity"],
        ));
        let outbox_pending = must(IntGauge::new(
            "alerting_notification_outbox_pending",
            "Notifications waiting in the outbox for delivery, as counted in the store.",
        ));
        must(registry.register(Box::new(created.clone())));
        must(registry.register(Box::new(invalid.clone())));
        must(registry.register(Box::new(not_stored.clone())));
        must(registry.register(Box::new(active.clone())));
        must(registry.register(Box::new(outbox_pending.clone())));
        Self {
            created,
            invalid,
            not_stored,
            active,
            outbox_pending,
        }
    }
}

/// Which changes are notified and to which receivers (the policy), and the dispatchers to wake when a
/// notification is written.
#[derive(Clone, Debug)]
pub struct Notifications {
    policy: Arc<Policy>,
    wakes: Arc<[Arc<Notify>]>,
}

impl Notifications {
    /// Notify changes of alerts as `policy` routes them; each of `wakes` (one per dispatcher) is signalled after
    /// notifications are written.
    pub fn new(policy: Policy, wakes: Vec<Arc<Notify>>) -> Self {
        Self {
            policy: Arc::new(policy),
            wakes: wakes.into(),
        }
    }

    fn of(
        &self,
        alert: &Alert,
        event: &'static str,
        actor: Option<&str>,
        note: Option<&str>,
    ) -> Option<NewNotification> {
        let targets = match event {
            "created" => self.policy.targets(alert),
            "resolved" => self.policy.targets_of_change(alert, true),
            _ => self.policy.targets_of_change(alert, false),
        };
        (!targets.is_empty()).then(|| NewNotification::new(alert, event, actor, note, targets))
    }
}

/// The alerting service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AlertService {
    store: Store,
    metrics: Metrics,
    notifications: Option<Notifications>,
    alertmanager: Arc<AlertmanagerConfig>,
    silences: Arc<Mutex<Option<SilencesRead>>>,
    counted_sources: Arc<std::collections::BTreeSet<String>>,
    /// Permits for title searches running at once (see [`TITLE_SEARCHES`]).
    searches: Arc<tokio::sync::Semaphore>,
    /// When an open alert may next pass its end time, as far as this replica knows.
    expiry: Arc<Mutex<ExpiryWatch>>,
}

/// What a replica knows of when an open alert may next pass its end time, so that its expiry sweep reads the open
/// alerts only when one may have (see [`AlertService::resolve_expired_if_due`]). Each replica watches the end times
/// it stores itself: another replica's are that replica's to watch, and those of a replica that stopped are found
/// by the full sweep every `alerting.alertmanager.full_sweep_interval`.
#[derive(Debug, Default)]
struct ExpiryWatch {
    /// The earliest end time among the open alerts the last sweep read and those this replica stored since that
    /// sweep began; `None` when there were none.
    next: Option<chrono::DateTime<chrono::Utc>>,
    /// When the last sweep began; `None` before the first.
    swept: Option<Instant>,
}

impl ExpiryWatch {
    /// Whether a sweep is due at `now` (`at` on the monotonic clock): before the first, once an end time it knows
    /// of has passed, or `full` after the last.
    fn due(&self, now: chrono::DateTime<chrono::Utc>, at: Instant, full: Duration) -> bool {
        self.swept
            .is_none_or(|swept| at.saturating_duration_since(swept) >= full)
            || self.next.is_some_and(|next| next <= now)
    }

    /// Takes `ends_at` into account: the next end time is then no later than `ends_at`.
    fn lower(&mut self, ends_at: chrono::DateTime<chrono::Utc>) {
        self.next = Some(self.next.map_or(ends_at, |next| next.min(ends_at)));
    }
}

/// Open alerts the expiry sweep reads at once, earliest end first.
const EXPIRY_PAGE: u32 = 1000;

/// Title searches (`GET /api/v1/alerts?q=`) run at once; more are answered 429. A search reads every alert it
/// could match (no index serves a substring): 250 to 400 ms of the database's CPU at 1,100,000 alerts, so that a
/// flood of them would otherwise hold every pooled connection and starve every other request.
pub const TITLE_SEARCHES: usize = 2;

/// The sources GoMon's own receivers record, each counted under its name in `alerting_alerts_created_total`.
pub const KNOWN_SOURCES: [&str; 6] = [
    "api",
    "kubernetes",
    "prometheus",
    "vmalert",
    "alertmanager",
    "grafana",
];

/// The silences last read from the store, and when.
type SilencesRead = (Instant, Arc<Vec<Silence>>);

/// How long the service reuses the silences it read before reading them again.
const SILENCES_FRESH_FOR: Duration = Duration::from_secs(1);

/// Most follow-ups claimed at once.
const FOLLOW_UP_BATCH: u32 = 64;

/// How often the follow-ups of a silenced alert are looked at again: what fell due while it was muted goes out
/// once the silence ends.
const MUTED_RECHECK: Duration = Duration::from_secs(30);

/// The first of `at`, `at + interval`, `at + 2 interval`, … later than `now`: reminders missed while the service
/// was down are sent once, not once each.
fn next_after(
    at: chrono::DateTime<chrono::Utc>,
    interval: Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let step = chrono::Duration::from_std(interval).ok()?;
    let missed = (now - at).num_milliseconds().max(0) / step.num_milliseconds().max(1);
    at.checked_add_signed(step.checked_mul(i32::try_from(missed + 1).ok()?)?)
}

/// `elapsed` as `1h 5m` (whole seconds), for messages and the audit trail.
fn spoken(elapsed: Duration) -> String {
    humantime_serde::re::humantime::format_duration(Duration::from_secs(elapsed.as_secs()))
        .to_string()
}

impl AlertService {
    /// The service over `store`, registering its metrics in `registry`.
    pub fn new(store: Store, registry: &Registry) -> Self {
        Self {
            store,
            metrics: Metrics::new(registry),
            notifications: None,
            alertmanager: Arc::new(AlertmanagerConfig::default()),
            silences: Arc::default(),
            counted_sources: Arc::new(KNOWN_SOURCES.iter().map(|s| (*s).to_owned()).collect()),
            searches: Arc::new(tokio::sync::Semaphore::new(TITLE_SEARCHES)),
            expiry: Arc::default(),
        }
    }

    /// The same service, mapping alerts of the Alertmanager API as `config` says.
    pub fn with_alertmanager(mut self, config: AlertmanagerConfig) -> Self {
        if let Some(source) = &config.source {
            Arc::make_mut(&mut self.counted_sources).insert(source.clone());
        }
        self.alertmanager = Arc::new(config);
        self
    }

    /// The same service, counting alerts of `sources` under their own name in `alerting_alerts_created_total`
    /// besides [`KNOWN_SOURCES`]; any other source is counted as `other`, so that callers cannot create series.
    pub fn with_counted_sources(mut self, sources: &[String]) -> Self {
        Arc::make_mut(&mut self.counted_sources).extend(sources.iter().cloned());
        self
    }

    /// How alerts of the Alertmanager API are mapped.
    pub fn alertmanager(&self) -> &AlertmanagerConfig {
        &self.alertmanager
    }

    /// The notification policy; `None` when no receiver is configured.
    pub fn policy(&self) -> Option<Arc<Policy>> {
        self.notifications.as_ref().map(|n| n.policy.clone())
    }

    /// The same service, writing a notification to the outbox with every change `notifications` selects.
    pub fn with_notifications(mut self, notifications: Notifications) -> Self {
        self.notifications = Some(notifications);
        self
    }

    fn notification(
        &self,
        alert: &Alert,
        event: &'static str,
        entry: &AuditEntry,
        note: Option<&str>,
    ) -> Option<NewNotification> {
        self.notifications
            .as_ref()
            .and_then(|n| n.of(alert, event, entry.actor.as_deref(), note))
    }

    fn wake_dispatcher(&self) {
        if let Some(notifications) = &self.notifications {
            for wake in notifications.wakes.iter() {
                wake.notify_one();
            }
        }
    }

    /// The store underneath, for health checks and shutdown.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates `new`, or returns the open alert with its fingerprint. The flag is true when it was created.
    pub async fn create(&self, new: NewAlert, actor: Option<String>) -> Result<(Alert, bool)> {
        let silences = self.silences_if_notifying().await?;
        let creation = self.creation(new, None, actor, false, &silences)?;
        self.store_creations(vec![creation], Durability::Flushed, true)
            .await?
            .pop()
            .ok_or_else(|| Error::Internal("no result for a creation".into()))
    }

    /// What creating `new` stores: the alert (ending at `ends_at`), its audit entry, and its notification unless
    /// it is not notified or one of `silences` mutes it. `refresh`: see [`Creation::refresh`].
    fn creation(
        &self,
        new: NewAlert,
        ends_at: Option<chrono::DateTime<chrono::Utc>>,
        actor: Option<String>,
        refresh: bool,
        silences: &[Silence],
    ) -> Result<Creation> {
        new.validate()?;
        let now = model::now();
        let mut alert = new.into_alert(now);
        alert.ends_at = ends_at;
        if alert.jaeger_trace_id.is_none() {
            // The trace that creates it, so that the Slack message's Jaeger link opens it.
            alert.jaeger_trace_id =
                gomon_runtime::telemetry::sampled_trace_id(&tracing::Span::current());
        }
        let entry = AuditEntry::created(&alert, actor);
        let notification = self
            .notification(&alert, "created", &entry, None)
            .filter(|_| {
                let labels = alert_labels(&alert);
                !silences.iter().any(|s| s.mutes(&labels, now))
            });
        Ok(Creation {
            alert,
            actor: entry.actor,
            notification,
            refresh,
        })
    }

    /// Stores `creations` all together or none (see [`Store::create_all`]; `read_back`: the existing alerts as
    /// stored), then counts and logs the alerts created and wakes the dispatcher if they are notified.
    async fn store_creations(
        &self,
        creations: Vec<Creation>,
        durability: Durability,
        read_back: bool,
    ) -> Result<Vec<(Alert, bool)>> {
        let notified = notified(&creations);
        let stored = self
            .store
            .create_all(creations, durability, read_back)
            .await?;
        self.after_stored(&stored, &notified);
        Ok(stored)
    }

    /// Queues `creations` to be stored (see [`Store::queue_all`]) and returns; as they are stored, counts and logs
    /// the alerts created and wakes the dispatcher if they are notified. Alerts the store gives up on are counted
    /// in `alerting_alerts_queued_not_stored_total` and logged.
    async fn queue_creations(
        &self,
        creations: Vec<Creation>,
        durability: Durability,
    ) -> Result<()> {
        let notified = notified(&creations);
        let service = self.clone();
        self.store
            .queue_all(creations, durability, move |stored| match stored {
                Ok(stored) => service.after_stored(&stored, &notified),
                Err(NotStored { alerts, error }) => {
                    service.metrics.not_stored.inc_by(alerts as u64);
                    tracing::error!(alerts, %error,
                        "alerts of a rule engine answered once queued were not stored; its next resend brings them again");
                }
            })
            .await
    }

    /// Counts and logs the alerts of `stored` that were created, and wakes the dispatcher if one of them is
    /// `notified`.
    fn after_stored(&self, stored: &[(Alert, bool)], notified: &HashSet<Uuid>) {
        self.watch_ends(stored.iter().map(|(alert, _)| alert.ends_at));
        let mut wake = false;
        for (alert, created) in stored {
            if *created {
                wake |= notified.contains(&alert.id);
                self.count_created(alert);
            }
        }
        if wake {
            self.wake_dispatcher();
        }
    }

    /// Counts and logs an alert just created.
    fn count_created(&self, alert: &Alert) {
        let source = if self.counted_sources.contains(&alert.source) {
            alert.source.as_str()
        } else {
            "other"
        };
        self.metrics
            .created
            .with_label_values(&[alert.severity.as_str(), source])
            .inc();
        tracing::info!(alert_id = %alert.id, severity = %alert.severity, source = %alert.source,
            title = %alert.title, "alert created");
    }

    /// Maps a request's alerts of the Alertmanager API one by one (each already parsed, or rejected as
    /// malformed): those that map, and the index and reason of each that does not, counted in
    /// `alerting_alerts_invalid_total{reason}`.
    pub fn map_rule_alerts(
        &self,
        alerts: Vec<std::result::Result<PostableAlert, Rejection>>,
    ) -> (Vec<RuleAlert>, Vec<(usize, Rejection)>) {
        let now = model::now();
        self.map_each(alerts, |alert| alert.map(&self.alertmanager, now))
    }

    /// Maps the alerts of a Grafana webhook one by one, as [`AlertService::map_rule_alerts`] does.
    pub fn map_grafana_alerts(
        &self,
        alerts: Vec<std::result::Result<GrafanaAlert, Rejection>>,
    ) -> (Vec<RuleAlert>, Vec<(usize, Rejection)>) {
        let now = model::now();
        self.map_each(alerts, |alert| alert.map(&self.alertmanager, now))
    }

    fn map_each<T>(
        &self,
        items: Vec<std::result::Result<T, Rejection>>,
        map: impl Fn(T) -> std::result::Result<RuleAlert, Rejection>,
    ) -> (Vec<RuleAlert>, Vec<(usize, Rejection)>) {
        let mut mapped = Vec::with_capacity(items.len());
        let mut rejected = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            match item.and_then(&map) {
                Ok(alert) => mapped.push(alert),
                Err(rejection) => {
                    self.metrics
                        .invalid
                        .with_label_values(&[rejection.reason])
                        .inc();
                    rejected.push((index, rejection));
                }
            }
        }
        (mapped, rejected)
    }

    /// Applies alerts from a rule engine, in order. A resolved alert, or an end time in the past, resolves the
    /// open alert with the same label set (if any); otherwise the alert is created, or the open one updated (title,
    /// description, annotations), and it is resolved at its end time (if any) unless sent again before. The whole
    /// request is stored in one transaction, or none of it is: alerts all to create or update go to the writers
    /// (batched with other requests); a request that also resolves alerts, or names one label set twice, is
    /// applied step by step in a transaction of its own ([`Store::apply_in_order`]). Committed as `durability`
    /// says; with [`Durability::Resent`], alerts all to create or update are answered once queued (see
    /// [`Store::queue_all`]).
    pub async fn receive(
        &self,
        alerts: Vec<RuleAlert>,
        actor: Option<String>,
        durability: Durability,
    ) -> Result<()> {
        let now = model::now();
        let silences = self.silences_if_notifying().await?;
        let steps = alerts
            .into_iter()
            .map(|rule| {
                if rule.resolved || rule.ends_at.is_some_and(|ends_at| ends_at <= now) {
                    Ok(Step::Resolve(rule.alert.fingerprint()))
                } else {
                    let creation =
                        self.creation(rule.alert, rule.ends_at, actor.clone(), true, &silences)?;
                    Ok(Step::Create(Box::new(creation)))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let fingerprints: HashSet<&str> = steps.iter().map(step_fingerprint).collect();
        let all_creations = steps.iter().all(|step| matches!(step, Step::Create(_)));
        if !all_creations || fingerprints.len() < steps.len() {
            self.apply_in_order(steps, actor, &silences, durability)
                .await?;
            return Ok(());
        }
        let creations = steps
            .into_iter()
            .filter_map(|step| match step {
                Step::Create(creation) => Some(*creation),
                Step::Resolve(_) => None,
            })
            .collect();
        match durability {
            Durability::Resent => self.queue_creations(creations, durability).await,
            Durability::Flushed => self
                .store_creations(creations, durability, false)
                .await
                .map(|_| ()),
        }
    }

    /// Applies `steps` of a rule engine in one transaction (see [`Store::apply_in_order`]): resolutions as
    /// [`Change::Resolve`] by `actor`, with the note "resolved by its rule engine". The steps of one label set keep
    /// their order; across label sets they go in fingerprint order, the order in which the writers lock rows, so
    /// that this transaction and a writer's never wait on each other in a cycle.
    async fn apply_in_order(
        &self,
        mut steps: Vec<Step>,
        actor: Option<String>,
        silences: &[Silence],
        durability: Durability,
    ) -> Result<()> {
        steps.sort_by(|a, b| step_fingerprint(a).cmp(step_fingerprint(b)));
        let notified: Vec<bool> = steps
            .iter()
            .map(|step| matches!(step, Step::Create(c) if c.notification.is_some()))
            .collect();
        let resolve = Change::Resolve {
            by: None,
            note: Some("resolved by its rule engine".into()),
        };
        let applied = self
            .store
            .apply_in_order(steps, self.changer(&resolve, actor, silences), durability)
            .await?;
        self.watch_ends(applied.iter().map(|applied| match applied {
            Applied::Created(alert, _) => alert.ends_at,
            Applied::Resolved(_) => None,
        }));
        let mut wake = false;
        for (applied, notify) in applied.into_iter().zip(notified) {
            match applied {
                Applied::Created(alert, created) => {
                    if created {
                        wake |= notify;
                        self.count_created(&alert);
                    }
                }
                Applied::Resolved(Some(alert)) => {
                    wake |= self.notifies(&alert);
                    tracing::info!(alert_id = %alert.id, status = %alert.status, change = ?resolve,
                        "alert changed");
                }
                Applied::Resolved(None) => {}
            }
        }
        if wake {
            self.wake_dispatcher();
        }
        Ok(())
    }

    /// Deletes the silences that expired longer than `alerting.alertmanager.silence_retention` ago; returns how
    /// many.
    pub async fn delete_old_silences(&self) -> Result<u64> {
        let retention = chrono::Duration::from_std(self.alertmanager.silence_retention)
            .unwrap_or(chrono::Duration::MAX);
        let before = model::now()
            .checked_sub_signed(retention)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let deleted = self.store.delete_silences_ended_before(before).await?;
        if deleted > 0 {
            self.forget_silences();
        }
        Ok(deleted)
    }

    /// The expiry watch, whatever a panic while holding it left (each of its states is valid).
    fn expiry(&self) -> std::sync::MutexGuard<'_, ExpiryWatch> {
        self.expiry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes end times this replica just stored (committed), so that its sweep reads the open alerts when the
    /// earliest has passed.
    fn watch_ends(&self, ends: impl Iterator<Item = Option<chrono::DateTime<chrono::Utc>>>) {
        if let Some(earliest) = ends.flatten().min() {
            self.expiry().lower(earliest);
        }
    }

    /// [`Self::resolve_expired`] when it may find something: an end time this replica stored, or read in its last
    /// sweep, has passed, or `alerting.alertmanager.full_sweep_interval` has since that sweep. `None` when it did
    /// not read the open alerts.
    pub async fn resolve_expired_if_due(&self) -> Result<Option<usize>> {
        let due = self.expiry().due(
            model::now(),
            Instant::now(),
            self.alertmanager.full_sweep_interval,
        );
        if !due {
            return Ok(None);
        }
        self.resolve_expired().await.map(Some)
    }

    /// Resolves every open alert whose end time has passed (rule engine alerts no longer re-sent), reading the open
    /// alerts earliest end first, [`EXPIRY_PAGE`] at a time, up to the first that has not ended: its end time is
    /// when the next sweep is due (see [`Self::resolve_expired_if_due`]). Returns how many it resolved.
    pub async fn resolve_expired(&self) -> Result<usize> {
        {
            // End times stored from now on may be committed after the reads below began: they are noted anew.
            let mut watch = self.expiry();
            watch.swept = Some(Instant::now());
            watch.next = None;
        }
        let swept = self.resolve_ended().await;
        let mut watch = self.expiry();
        match &swept {
            Ok((_, Some(next))) => watch.lower(*next),
            Ok((_, None)) => {}
            // Read again at the next tick.
            Err(_) => watch.lower(model::now()),
        }
        swept.map(|(resolved, _)| resolved)
    }

    /// The pages of [`Self::resolve_expired`]: how many alerts it resolved, and the end time of the first open
    /// alert that has not ended (or `now` when a page of ended alerts resolved none: each was sent again meanwhile,
    /// and is looked at again at the next tick).
    async fn resolve_ended(&self) -> Result<(usize, Option<chrono::DateTime<chrono::Utc>>)> {
        let mut resolved = 0;
        loop {
            let now = model::now();
            let page = self.store.ending_first(EXPIRY_PAGE).await?;
            let full = page.len() == EXPIRY_PAGE as usize;
            let mut resolved_now = 0;
            for (id, ends_at) in page {
                if ends_at >= now {
                    return Ok((resolved + resolved_now, Some(ends_at)));
                }
                if self.resolve_if_expired(id).await?.is_some() {
                    resolved_now += 1;
                }
            }
            resolved += resolved_now;
            if !full {
                return Ok((resolved, None));
            }
            if resolved_now == 0 {
                return Ok((resolved, Some(now)));
            }
        }
    }

    /// Resolves alert `id` if it is still open and past its end time (a re-send may have moved it meanwhile).
    async fn resolve_if_expired(&self, id: Uuid) -> Result<Option<Alert>> {
        let change = Change::Resolve {
            by: None,
            note: Some("not re-sent by its rule engine before its endsAt".into()),
        };
        let silences = self.silences_if_notifying().await?;
        let now = model::now();
        let resolved = self
            .store
            .update_if_expired(id, now, |current| {
                let (alert, entry) = change.apply(current, Some("expiry".into()), now)?;
                let labels = alert_labels(&alert);
                let notification = self
                    .notification(&alert, change.event(), &entry, change.note())
                    .filter(|_| !silences.iter().any(|s| s.mutes(&labels, now)));
                Ok((alert, entry, notification))
            })
            .await?;
        if let Some(alert) = &resolved {
            if self.notifies(alert) {
                self.wake_dispatcher();
            }
            tracing::info!(alert_id = %alert.id, "alert resolved: past its endsAt");
        }
        Ok(resolved)
    }

    /// The silences not yet expired, read from the store at most every [`SILENCES_FRESH_FOR`] (another replica's
    /// new silence takes effect here within that time; this replica's at once).
    pub async fn live_silences(&self) -> Result<Arc<Vec<Silence>>> {
        if let Ok(cache) = self.silences.lock()
            && let Some((read_at, silences)) = cache.as_ref()
            && read_at.elapsed() < SILENCES_FRESH_FOR
        {
            return Ok(silences.clone());
        }
        let silences = Arc::new(self.store.silences(Some(model::now())).await?);
        if let Ok(mut cache) = self.silences.lock() {
            *cache = Some((Instant::now(), silences.clone()));
        }
        Ok(silences)
    }

    /// The live silences when changes are notified (they decide which are muted); none otherwise.
    async fn silences_if_notifying(&self) -> Result<Arc<Vec<Silence>>> {
        match self.notifications {
            Some(_) => self.live_silences().await,
            None => Ok(Arc::default()),
        }
    }

    fn forget_silences(&self) {
        if let Ok(mut cache) = self.silences.lock() {
            *cache = None;
        }
    }

    /// Creates a silence, or replaces the one `posted.id` names (404 if there is none). Returns its id. `actor`,
    /// the caller's token name, is recorded as its creator whatever `createdBy` says.
    pub async fn post_silence(
        &self,
        mut posted: PostableSilence,
        actor: Option<String>,
    ) -> Result<Uuid> {
        if let Some(actor) = &actor {
            posted.created_by.clone_from(actor);
        }
        posted.validate()?;
        let (id, action) = match &posted.id {
            Some(id) if !id.is_empty() => {
                let id = Uuid::parse_str(id)
                    .map_err(|_| Error::invalid("id", format!("{id:?} is not a silence id")))?;
                self.store
                    .silence(id)
                    .await?
                    .ok_or_else(|| Error::Missing(format!("silence {id} not found")))?;
                (id, "updated")
            }
            _ => (Uuid::new_v4(), "created"),
        };
        let silence = Silence {
            id,
            matchers: posted.matchers,
            starts_at: posted.starts_at,
            ends_at: posted.ends_at,
            created_by: posted.created_by,
            comment: posted.comment,
            updated_at: model::now(),
        };
        let actor = actor.unwrap_or_else(|| silence.created_by.clone());
        let entry = SilenceAction::new(&silence, action, Some(actor));
        self.store.upsert_silence(&silence, &entry).await?;
        self.forget_silences();
        tracing::info!(silence_id = %id, created_by = %silence.created_by, action, "silence set");
        Ok(id)
    }

    /// Every silence, expired ones included, in start order.
    pub async fn silences(&self) -> Result<Vec<Silence>> {
        self.store.silences(None).await
    }

    /// The silence with `id`.
    pub async fn silence(&self, id: Uuid) -> Result<Silence> {
        self.store
            .silence(id)
            .await?
            .ok_or_else(|| Error::Missing(format!("silence {id} not found")))
    }

    /// The audit trail of silence `id`, oldest first; 404 when there is no such silence.
    pub async fn silence_actions(&self, id: Uuid) -> Result<Vec<SilenceAction>> {
        self.silence(id).await?;
        self.store.silence_actions(id).await
    }

    /// Expires silence `id` now (a pending one never starts), by `actor` (the caller's token name). Expiring an
    /// expired silence changes nothing.
    pub async fn expire_silence(&self, id: Uuid, actor: Option<String>) -> Result<Silence> {
        let mut silence = self.silence(id).await?;
        let now = model::now();
        if silence.ends_at > now {
            silence.ends_at = now;
            silence.starts_at = silence.starts_at.min(now);
            silence.updated_at = now;
            let entry = SilenceAction::new(&silence, "expired", actor);
            self.store.upsert_silence(&silence, &entry).await?;
            self.forget_silences();
            tracing::info!(silence_id = %id, by = entry.actor.as_deref().unwrap_or(""), "silence expired");
        }
        Ok(silence)
    }

    /// The alert with `id`.
    pub async fn get(&self, id: Uuid) -> Result<Alert> {
        self.store.get(id).await?.ok_or(Error::NotFound(id))
    }

    /// The alerts of `ids` that exist, oldest first (see [`Store::get_many`]).
    pub async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<Alert>> {
        self.store.get_many(ids).await
    }

    /// Up to `limit` open alerts created after `after` that `selection` reads, oldest first (see
    /// [`Store::open_page`]).
    pub async fn open_page(
        &self,
        after: Option<(chrono::DateTime<chrono::Utc>, Uuid)>,
        selection: &crate::store::OpenSelection,
        limit: u32,
    ) -> Result<Vec<Alert>> {
        self.store.open_page(after, selection, limit).await
    }

    /// The alerts `filter` selects. A title search while [`TITLE_SEARCHES`] run is refused ([`Error::Busy`]).
    pub async fn list(&self, filter: &AlertFilter) -> Result<AlertPage> {
        // A title search holds one of the permits while it runs; none free: shed at once.
        let _search = match filter.title_contains {
            Some(_) => Some(self.searches.try_acquire().map_err(|_| {
                Error::Busy(format!(
                    "{TITLE_SEARCHES} title searches (q) are running: retry in a second"
                ))
            })?),
            None => None,
        };
        self.store.list(filter).await
    }

    /// Applies `change` to alert `id`; `actor` is the caller, recorded when the change names nobody.
    pub async fn change(&self, id: Uuid, change: Change, actor: Option<String>) -> Result<Alert> {
        change.validate()?;
        let silences = self.silences_if_notifying().await?;
        let alert = self
            .store
            .update(id, self.changer(&change, actor, &silences))
            .await?;
        if self.notifies(&alert) {
            self.wake_dispatcher();
        }
        tracing::info!(alert_id = %alert.id, status = %alert.status, ?change, "alert changed");
        Ok(alert)
    }

    /// What `change` by `actor` writes for an alert, as the store's update of it calls for: the changed alert, its
    /// audit entry, and its notification unless one of `silences` mutes it.
    fn changer<'a>(
        &'a self,
        change: &'a Change,
        actor: Option<String>,
        silences: &'a [Silence],
    ) -> impl Fn(Alert) -> Result<Changed> + Send + Sync + 'a {
        move |current| {
            let at = model::now();
            let (alert, entry) = change.apply(current, actor.clone(), at)?;
            let labels = alert_labels(&alert);
            let notification = self
                .notification(&alert, change.event(), &entry, change.note())
                .filter(|_| !silences.iter().any(|s| s.mutes(&labels, at)));
            Ok((alert, entry, notification))
        }
    }

    /// Whether some route takes `alert`'s notifications.
    fn notifies(&self, alert: &Alert) -> bool {
        self.notifications
            .as_ref()
            .is_some_and(|n| !n.policy.targets(alert).is_empty())
    }

    /// The alerts from `source` that are not resolved, oldest first.
    pub async fn open_from(&self, source: &str) -> Result<Vec<Alert>> {
        self.store.open_from(source).await
    }

    /// Deletes alert `id`; the audit trail keeps a copy of it.
    pub async fn delete(&self, id: Uuid, actor: Option<String>) -> Result<Alert> {
        let alert = self
            .store
            .delete(id, |alert| {
                let mut entry = AuditEntry::new(
                    alert,
                    "deleted",
                    actor,
                    serde_json::to_value(alert).unwrap_or_default(),
                );
                entry.created_at = model::now();
                entry
            })
            .await?;
        tracing::info!(alert_id = %alert.id, "alert deleted");
        Ok(alert)
    }

    /// The audit trail of alert `id`, oldest first; 404 when the alert never existed.
    pub async fn actions(&self, id: Uuid) -> Result<Vec<AuditEntry>> {
        let actions = self.store.actions(id).await?;
        if actions.is_empty() {
            return Err(Error::NotFound(id));
        }
        Ok(actions)
    }

    /// Sends what is due of the follow-ups of firing, unacknowledged alerts: each route's reminders to its
    /// receiver every `repeat_interval`, and its escalation steps to theirs. Follow-ups are claimed for `lease`
    /// (another replica takes them once it runs out), so each reminder and step goes out once across replicas.
    /// Returns how many follow-ups it finished.
    pub async fn follow_up(&self, lease: Duration) -> Result<usize> {
        let Some(notifications) = &self.notifications else {
            return Ok(0);
        };
        let policy = notifications.policy.clone();
        let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let mut done = 0;
        let mut notified = false;
        loop {
            let now = model::now();
            let claimed = self
                .store
                .claim_followups(now, now + lease, FOLLOW_UP_BATCH)
                .await?;
            let full = claimed.len() == FOLLOW_UP_BATCH as usize;
            if claimed.is_empty() {
                break;
            }
            let silences = self.live_silences().await?;
            for row in claimed {
                let (next, new, entries) = self.next_follow_up(&policy, &silences, &row).await?;
                if self
                    .store
                    .finish_followup(&row, next, &new, &entries)
                    .await?
                {
                    done += 1;
                    notified |= !new.is_empty();
                }
            }
            if !full {
                break;
            }
        }
        if notified {
            self.wake_dispatcher();
        }
        Ok(done)
    }

    /// What the claimed follow-up `row` does now: its next state, and the notifications and audit entries due.
    async fn next_follow_up(
        &self,
        policy: &Policy,
        silences: &[Silence],
        row: &ClaimedFollowUp,
    ) -> Result<(Option<NextFollowUp>, Vec<NewNotification>, Vec<AuditEntry>)> {
        let now = model::now();
        let alert = self
            .store
            .get(row.alert_id)
            .await?
            .filter(|alert| alert.status == Status::Firing);
        let route = policy.route(row.route, &row.receiver);
        // Acknowledged, resolved or deleted, or its route is gone from the configuration: nothing more to do.
        let (Some(alert), Some(route)) = (alert, route) else {
            return Ok((None, Vec::new(), Vec::new()));
        };
        let labels = alert_labels(&alert);
        if silences.iter().any(|s| s.mutes(&labels, now)) {
            let next = NextFollowUp {
                follow_up: row.follow_up,
                repeats: row.repeats,
                due_at: now + chrono::Duration::from_std(MUTED_RECHECK).unwrap_or_default(),
            };
            return Ok((Some(next), Vec::new(), Vec::new()));
        }
        let unacknowledged = spoken((now - alert.created_at).to_std().unwrap_or_default());
        let mut follow_up = row.follow_up;
        let mut repeats = row.repeats;
        let mut new = Vec::new();
        let mut entries = Vec::new();
        let entry = |action: &str, details: serde_json::Value| AuditEntry {
            alert_id: alert.id,
            action: action.to_owned(),
            actor: Some("notify".to_owned()),
            details,
            created_at: now,
        };
        let notification = |event: &'static str, note: &str, receivers: &[String]| {
            let targets = receivers
                .iter()
                .map(|receiver| Target {
                    receiver: receiver.clone(),
                    route: row.route,
                    follow_up: None,
                    group: policy.group(route, receiver, &alert),
                })
                .collect();
            let mut notification = NewNotification::new(&alert, event, None, Some(note), targets);
            notification.created_at = now;
            notification
        };
        if let Some(at) = follow_up.repeat_at.filter(|at| *at <= now) {
            repeats += 1;
            let note =
                format!("Still firing, unacknowledged for {unacknowledged} (reminder {repeats})");
            let mut reminder = notification("repeated", &note, std::slice::from_ref(&row.receiver));
            reminder.payload["repeat"] = serde_json::json!(repeats);
            new.push(reminder);
            entries.push(entry(
                "repeated",
                serde_json::json!({"receiver": row.receiver, "route": row.route, "repeat": repeats}),
            ));
            follow_up.repeat_at = route
                .repeat_interval(alert.severity)
                .and_then(|interval| next_after(at, interval, now));
        }
        if follow_up.escalate_at.is_some_and(|at| at <= now) {
            let steps = route.escalation();
            let index = usize::try_from(follow_up.step).unwrap_or(usize::MAX);
            if let Some(step) = steps.get(index) {
                let note = format!(
                    "Escalated: unacknowledged for {unacknowledged} (step {} of {})",
                    index + 1,
                    steps.len()
                );
                let mut escalation = notification("escalated", &note, &step.receivers);
                escalation.payload["escalation_step"] = serde_json::json!(index + 1);
                new.push(escalation);
                entries.push(entry(
                    "escalated",
                    serde_json::json!({
                        "step": index + 1,
                        "receivers": step.receivers,
                        "after": spoken(step.after),
                        "route": row.route,
                    }),
                ));
            }
            follow_up.step = follow_up.step.saturating_add(1);
            follow_up.escalate_at = steps
                .get(index.saturating_add(1))
                .and_then(|step| chrono::Duration::from_std(step.after).ok())
                .and_then(|after| alert.created_at.checked_add_signed(after));
        }
        let next = follow_up.due_at().map(|due_at| NextFollowUp {
            follow_up,
            repeats,
            due_at,
        });
        Ok((next, new, entries))
    }

    /// The outbox rows `filter` selects, newest first, and how many match.
    pub async fn notifications(
        &self,
        filter: &NotificationFilter,
    ) -> Result<(Vec<Notification>, u64)> {
        self.store.notifications(filter).await
    }

    /// Sets `alerting_active_alerts` and `alerting_notification_outbox_pending` from the store's counts, so they
    /// are true after a restart too.
    pub async fn refresh_gauges(&self) -> Result<()> {
        self.metrics
            .outbox_pending
            .set(self.store.pending_notifications().await?);
        self.open_counts().await?;
        Ok(())
    }

    /// Notifications waiting in the outbox.
    pub async fn pending_notifications(&self) -> Result<i64> {
        self.store.pending_notifications().await
    }

    /// Notifications waiting in the outbox, by receiver.
    pub async fn pending_by_receiver(&self) -> Result<Vec<(String, i64)>> {
        self.store.pending_by_receiver().await
    }

    /// How many alerts are open, by status and severity; sets `alerting_active_alerts` on the way.
    pub async fn open_counts(&self) -> Result<OpenCounts> {
        let counts = OpenCounts::new(&self.store.open_counts().await?);
        for severity in Severity::ALL {
            self.metrics
                .active
                .with_label_values(&[severity.as_str()])
                .set(i64::try_from(counts.open(severity)).unwrap_or(i64::MAX));
        }
        Ok(counts)
    }

    /// The silences that mute alert `id` now or will when they start (expired ones left out).
    pub async fn silences_of(&self, id: Uuid) -> Result<Vec<Silence>> {
        let alert = self.get(id).await?;
        let labels = alert_labels(&alert);
        let now = model::now();
        Ok(self
            .store
            .silences(Some(now))
            .await?
            .into_iter()
            .filter(|silence| silence.matchers.iter().all(|m| m.matches(&labels)))
            .collect())
    }
}

/// The ids of the alerts of `creations` that are notified when created.
fn notified(creations: &[Creation]) -> HashSet<Uuid> {
    creations
        .iter()
        .filter(|c| c.notification.is_some())
        .map(|c| c.alert.id)
        .collect()
}

/// The fingerprint of the alert a step creates or resolves.
fn step_fingerprint(step: &Step) -> &str {
    match step {
        Step::Create(creation) => &creation.alert.fingerprint,
        Step::Resolve(fingerprint) => fingerprint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_is_due_first_when_an_end_passes_and_after_the_full_interval() {
        let full = Duration::from_secs(60);
        let (now, at) = (model::now(), Instant::now());
        let mut watch = ExpiryWatch::default();
        assert!(watch.due(now, at, full), "before the first sweep");
        watch.swept = Some(at);
        assert!(!watch.due(now, at, full), "nothing known to end");
        watch.lower(now + chrono::Duration::seconds(30));
        watch.lower(now + chrono::Duration::seconds(90));
        assert_eq!(watch.next, Some(now + chrono::Duration::seconds(30)));
        assert!(!watch.due(now + chrono::Duration::seconds(29), at, full));
        assert!(watch.due(now + chrono::Duration::seconds(30), at, full));
        assert!(!watch.due(now, at + Duration::from_secs(59), full));
        assert!(watch.due(now, at + Duration::from_secs(60), full));
    }
}
