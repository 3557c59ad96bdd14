//! The dispatcher: delivers one receiver's rows of the notification outbox, through that receiver's circuit
//! breaker, in order for any one alert, with exponential backoff and jitter, honouring `Retry-After`. Each receiver
//! has its own dispatcher task, so a receiver that is down or slow delays only its own rows.
//!
//! Several replicas may run it on one PostgreSQL: each claims due rows with `FOR UPDATE SKIP LOCKED` and leases
//! them (`outbox.lease`), so a row is delivered by one replica, and by another if the first dies holding it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gomon_runtime::config::KeyError;
use gomon_runtime::metrics::must;
use gomon_runtime::shutdown::Shutdown;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::Instrument as _;

use super::breaker::{BreakerConfig, CircuitBreaker};
use super::email::EmailClient;
use super::group::{Batch, Item};
use super::outcome::SendOutcome;
use super::pagerduty::PagerDutyClient;
use super::policy::{DEFAULT_GROUP_INTERVAL, Fallback, Policy, ReceiverKind};
use super::slack::{Event, Message, SlackClient, SlackConfig, render, render_group};
use super::status::{DeliveryStatus, ReceiverHandle};
use super::webhook::{WebhookClient, payload};
use crate::model::{self, Notification};
use crate::store::{DeliveryRecord, Store};

/// How the outbox is delivered and retried (`alerting.outbox`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// A notification Slack refuses for good (invalid token, unknown channel) is marked failed once it has been
    /// tried this many times (every try counts, whatever its outcome).
    pub max_attempts: u32,
    /// A notification whose try fails when it is older than this (counted from its alert change) is marked failed.
    /// While the circuit breaker is open nothing is tried, so a notification waits without ageing out.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Wait before the first retry; doubled on each further one, with jitter. Also read as `backoff_initial`.
    #[serde(with = "humantime_serde", alias = "backoff_initial")]
    pub min_backoff: Duration,
    /// Longest wait between two tries. Also read as `backoff_max`.
    #[serde(with = "humantime_serde", alias = "backoff_max")]
    pub max_backoff: Duration,
    /// How long a dispatcher holds a claimed notification before another replica may take it.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How often the outbox is checked when nothing wakes the dispatcher (rows written by other replicas).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Most notifications claimed at once.
    pub batch_size: u32,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            max_age: Duration::from_secs(24 * 3600),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            batch_size: 16,
        }
    }
}

impl OutboxConfig {
    /// Checks values types cannot: each message names the key.
    pub fn check(&self) -> Result<(), KeyError> {
        let positive = [
            ("max_age", self.max_age),
            ("min_backoff", self.min_backoff),
            ("max_backoff", self.max_backoff),
            ("lease", self.lease),
            ("poll_interval", self.poll_interval),
        ];
        for (key, value) in positive {
            if value < Duration::from_millis(1) {
                return Err(KeyError::new(
                    key,
                    format!("must be at least 1ms, not {value:?}"),
                ));
            }
        }
        if self.max_attempts == 0 {
            return Err(KeyError::new("max_attempts", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(KeyError::new("batch_size", "must be at least 1"));
        }
        Ok(())
    }

    /// Wait before try `attempts + 1` after `attempts` failed ones (see [`gomon_runtime::backoff::delay`]).
    fn backoff(&self, attempts: i32) -> Duration {
        let attempts = u32::try_from(attempts).unwrap_or(1);
        gomon_runtime::backoff::delay(self.min_backoff, self.max_backoff, attempts, None)
    }
}

/// The notification metrics. Registered whether or not a receiver is configured, so dashboards always find them.
#[derive(Clone, Debug)]
pub struct NotifyMetrics {
    breaker_state: IntGauge,
    receiver_breaker: IntGaugeVec,
    slack: IntCounterVec,
    attempts: IntCounterVec,
    failed: IntCounter,
    delivery: Histogram,
}

impl NotifyMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let breaker_state = must(IntGauge::new(
            "alerting_circuit_breaker_state",
            "State of the circuit breaker of the first Slack receiver: 0 closed, 1 open, 2 half-open.",
        ));
        let receiver_breaker = must(IntGaugeVec::new(
            Opts::new(
                "alerting_receiver_circuit_breaker_state",
                "State of each receiver's circuit breaker: 0 closed, 1 open, 2 half-open.",
            ),
            &["receiver"],
        ));
        let attempts = must(IntCounterVec::new(
            Opts::new(
                "alerting_notification_attempts_total",
                "Delivery attempts, by receiver and outcome (success or failure).",
            ),
            &["receiver", "status"],
        ));
        let slack = must(IntCounterVec::new(
            Opts::new(
                "alerting_slack_notifications_total",
                "Slack delivery attempts, by outcome (success or failure).",
            ),
            &["status"],
        ));
        let failed = must(IntCounter::new(
            "alerting_notifications_failed_total",
            "Notifications given up on (marked failed in the outbox).",
        ));
        let delivery = must(Histogram::with_opts(
            HistogramOpts::new(
                "alerting_notification_delivery_seconds",
                "Time from the alert change to Slack's acceptance of its notification.",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
            ]),
        ));
        must(registry.register(Box::new(breaker_state.clone())));
        must(registry.register(Box::new(receiver_breaker.clone())));
        must(registry.register(Box::new(attempts.clone())));
        must(registry.register(Box::new(slack.clone())));
        must(registry.register(Box::new(failed.clone())));
        must(registry.register(Box::new(delivery.clone())));
        for status in ["success", "failure"] {
            slack.with_label_values(&[status]);
        }
        Self {
            breaker_state,
            receiver_breaker,
            slack,
            attempts,
            failed,
            delivery,
        }
    }
}

/// The span of one delivery attempt: a child of the span the notification was made in (the request that changed
/// the alert), from the `traceparent` its payload keeps. None when spans are not exported.
fn delivery_span(row: &Notification, name: &'static str) -> tracing::Span {
    if !gomon_runtime::telemetry::enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "alerting.notify",
        otel.name = name,
        otel.kind = "client",
        notification = row.id,
        alert_id = %row.alert_id,
        receiver = row.receiver.as_str(),
        event = row.event.as_str(),
        attempt = row.attempts + 1,
        outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    continue_trace(&span, row);
    span
}

/// Makes `span` a child of the span `row` was made in, from the `traceparent` its payload keeps.
fn continue_trace(span: &tracing::Span, row: &Notification) {
    if let Some(traceparent) = row
        .payload
        .get("traceparent")
        .and_then(|value| value.as_str())
    {
        let fields =
            std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        gomon_runtime::telemetry::set_parent(span, &fields);
    }
}

/// The span of one message of a group's notifications `rows` (group `key`): a child of the span the first was
/// made in. None when spans are not exported.
fn group_span(key: &str, rows: &[Notification], name: &'static str) -> tracing::Span {
    let Some(first) = rows.first() else {
        return tracing::Span::none();
    };
    if !gomon_runtime::telemetry::enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "alerting.notify",
        otel.name = name,
        otel.kind = "client",
        group = key,
        notifications = rows.len(),
        receiver = first.receiver.as_str(),
        attempt = first.attempts + 1,
        outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    continue_trace(&span, first);
    span
}

/// Most alerts a group's first Slack message may name for it to be edited when one of them changes.
pub const MAX_EDITED: usize = 100;

/// Most notifications of one group sent as one message; the rest go with the group's next.
pub const MAX_GROUP_ROWS: u32 = 1000;

/// How a receiver is sent to.
#[derive(Debug)]
pub enum Sender {
    /// Slack, through its client, with the receiver's settings (channels by severity, links).
    Slack {
        /// The HTTP client.
        client: SlackClient,
        /// The receiver's settings.
        config: Box<SlackConfig>,
    },
    /// Alertmanager's webhook payload, version 4.
    Webhook(WebhookClient),
    /// PagerDuty's Events API v2.
    PagerDuty(PagerDutyClient),
    /// Email through an SMTP smarthost.
    Email(EmailClient),
}

impl Sender {
    /// Whether a group's notifications go as one message (not to PagerDuty, which takes each alert alone).
    fn groups(&self) -> bool {
        !matches!(self, Sender::PagerDuty(_))
    }

    /// The name of a delivery attempt's span: `slack deliver` or `webhook deliver`.
    fn span_name(&self) -> &'static str {
        match self {
            Sender::Slack { .. } => "slack deliver",
            Sender::Webhook(_) => "webhook deliver",
            Sender::PagerDuty(_) => "pagerduty deliver",
            Sender::Email(_) => "email deliver",
        }
    }
}

/// One dispatcher per receiver of a policy, with the receivers' shared delivery status and the wake-ups the
/// service signals when it writes notifications.
pub struct Dispatchers {
    /// The dispatchers, in the policy's receiver order.
    pub dispatchers: Vec<Dispatcher>,
    /// Each dispatcher's wake-up.
    pub wakes: Vec<Arc<Notify>>,
    /// The receivers' delivery status, written by the dispatchers.
    pub status: DeliveryStatus,
}

impl Dispatchers {
    /// The dispatchers of `policy`'s receivers over `store`, their clients built (files read); a receiver's error
    /// names `alerting.notify.receivers[i]`, or `alerting.slack` when `explicit` is false (the policy is what
    /// `alerting.slack` stands for). `alerting_circuit_breaker_state` follows the first Slack receiver.
    pub fn new(
        policy: &Policy,
        store: &Store,
        outbox: &OutboxConfig,
        metrics: &NotifyMetrics,
        explicit: bool,
    ) -> anyhow::Result<Dispatchers> {
        let status = DeliveryStatus::configured(
            policy
                .receivers()
                .iter()
                .map(|receiver| (receiver.name.as_str(), receiver.kind.type_name())),
        );
        let shared = Arc::new(policy.clone());
        let mut dispatchers = Vec::new();
        let mut wakes = Vec::new();
        let mut legacy_gauge = true;
        for (index, receiver) in policy.receivers().iter().enumerate() {
            let key = if explicit {
                format!("alerting.notify.receivers[{index}]")
            } else {
                "alerting.slack".to_owned()
            };
            let (sender, breaker, feeds_legacy_gauge) = match &receiver.kind {
                ReceiverKind::Slack(slack) => {
                    let client = SlackClient::new(slack)
                        .map_err(|error| anyhow::anyhow!("{key}: {error}"))?
                        .ok_or_else(|| anyhow::anyhow!("{key}: no Slack destination"))?;
                    tracing::info!(
                        receiver = %receiver.name,
                        via = if client.uses_web_api() { "web API (chat.postMessage)" } else { "incoming webhook" },
                        "Slack receiver on"
                    );
                    let sender = Sender::Slack {
                        client,
                        config: Box::new(slack.clone()),
                    };
                    let feeds = std::mem::replace(&mut legacy_gauge, false);
                    (sender, slack.circuit_breaker.clone(), feeds)
                }
                ReceiverKind::Webhook(webhook) => {
                    let client = WebhookClient::new(webhook)
                        .map_err(|error| anyhow::anyhow!("{}", error.within(&key)))?;
                    tracing::info!(receiver = %receiver.name, "webhook receiver on");
                    (
                        Sender::Webhook(client),
                        webhook.circuit_breaker.clone(),
                        false,
                    )
                }
                ReceiverKind::PagerDuty(pagerduty) => {
                    let client = PagerDutyClient::new(pagerduty)
                        .map_err(|error| anyhow::anyhow!("{}", error.within(&key)))?;
                    tracing::info!(receiver = %receiver.name, "PagerDuty receiver on");
                    (
                        Sender::PagerDuty(client),
                        pagerduty.circuit_breaker.clone(),
                        false,
                    )
                }
                ReceiverKind::Email(email) => {
                    let client = EmailClient::new(email)
                        .map_err(|error| anyhow::anyhow!("{}", error.within(&key)))?;
                    tracing::info!(receiver = %receiver.name, smarthost = %email.smarthost, "email receiver on");
                    (Sender::Email(client), email.circuit_breaker.clone(), false)
                }
            };
            let wake = Arc::new(Notify::new());
            wakes.push(wake.clone());
            let handle = status
                .receiver(&receiver.name)
                .ok_or_else(|| anyhow::anyhow!("receiver {} has no status", receiver.name))?;
            dispatchers.push(
                Dispatcher::new(
                    store.clone(),
                    receiver.name.clone(),
                    sender,
                    breaker,
                    outbox.clone(),
                    metrics.clone(),
                    wake,
                    handle,
                    feeds_legacy_gauge,
                )
                .with_policy(shared.clone()),
            );
        }
        Ok(Dispatchers {
            dispatchers,
            wakes,
            status,
        })
    }
}

/// Delivers one receiver's rows of the outbox until shutdown.
pub struct Dispatcher {
    store: Store,
    receiver: String,
    sender: Sender,
    outbox: OutboxConfig,
    breaker: CircuitBreaker,
    metrics: NotifyMetrics,
    wake: Arc<Notify>,
    status: ReceiverHandle,
    /// Mirrors the breaker in `alerting_circuit_breaker_state` (the first Slack receiver).
    legacy_gauge: bool,
    /// The fallbacks of the routes to this receiver.
    fallbacks: Vec<Fallback>,
    /// The policy: the routes' grouping.
    policy: Arc<Policy>,
}

impl Dispatcher {
    /// A dispatcher delivering `store`'s rows for `receiver` with `sender` behind a breaker configured by
    /// `breaker`; `wake` is signalled when a notification is written. `legacy_gauge`: the breaker's state is also
    /// `alerting_circuit_breaker_state`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        receiver: String,
        sender: Sender,
        breaker: BreakerConfig,
        outbox: OutboxConfig,
        metrics: NotifyMetrics,
        wake: Arc<Notify>,
        status: ReceiverHandle,
        legacy_gauge: bool,
    ) -> Self {
        let gauge = metrics
            .receiver_breaker
            .with_label_values(&[receiver.as_str()]);
        let breaker = CircuitBreaker::new(&receiver, breaker, gauge);
        if legacy_gauge {
            metrics.breaker_state.set(breaker.state().as_gauge());
        }
        for status in ["success", "failure"] {
            metrics
                .attempts
                .with_label_values(&[receiver.as_str(), status]);
        }
        Self {
            store,
            receiver,
            sender,
            outbox,
            breaker,
            metrics,
            wake,
            status,
            legacy_gauge,
            fallbacks: Vec::new(),
            policy: Arc::new(Policy::default()),
        }
    }

    /// The same dispatcher under `policy`: grouping as its routes say, and handing the rows of routes with a
    /// fallback over to it while this receiver fails.
    pub fn with_policy(mut self, policy: Arc<Policy>) -> Self {
        self.fallbacks = policy.fallbacks_of(&self.receiver);
        self.policy = policy;
        self
    }

    /// Hands the pending rows of every route whose fallback is due (this receiver failing for its `after`) over
    /// to the fallback receiver, once each; wakes nobody (the fallback's dispatcher polls).
    async fn hand_over(&self) {
        let Some(failing) = self.breaker.failing_for(Instant::now()) else {
            return;
        };
        for fallback in self.fallbacks.iter().filter(|f| failing >= f.config.after) {
            match self
                .store
                .hand_over(&self.receiver, fallback, model::now())
                .await
            {
                Ok(0) => {}
                Ok(moved) => tracing::warn!(
                    moved,
                    route = fallback.route,
                    fallback = %fallback.config.receiver,
                    failing_for = ?failing,
                    "receiver failing: notifications handed over to the route's fallback"
                ),
                Err(error) => {
                    tracing::warn!(%error, "cannot hand notifications over to the fallback")
                }
            }
        }
    }

    /// Publishes the breaker's state: the delivery status, and the legacy gauge when this dispatcher feeds it.
    fn observe_breaker(&self) {
        let state = self.breaker.state();
        self.status.breaker(state);
        if self.legacy_gauge {
            self.metrics.breaker_state.set(state.as_gauge());
        }
    }

    /// Counts one attempt's outcome (`success` or `failure`).
    fn count(&self, outcome: &str) {
        self.metrics
            .attempts
            .with_label_values(&[self.receiver.as_str(), outcome])
            .inc();
        if matches!(self.sender, Sender::Slack { .. }) {
            self.metrics.slack.with_label_values(&[outcome]).inc();
        }
    }

    /// Waits for `pause`, a wake-up, or shutdown.
    async fn idle(&self, pause: Duration, shutdown: &Shutdown) {
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = self.wake.notified() => {}
            () = shutdown.clone().wait() => {}
        }
    }

    /// Delivers until `shutdown` fires; a delivery under way is finished first.
    pub async fn run(self, shutdown: Shutdown) {
        let span = tracing::info_span!("dispatcher", receiver = %self.receiver);
        self.deliver_until(shutdown).instrument(span).await;
    }

    async fn deliver_until(mut self, shutdown: Shutdown) {
        while !shutdown.is_triggered() {
            let now = model::now();
            let claimed = match self
                .store
                .claim_due(
                    now,
                    now + self.lease(),
                    self.outbox.batch_size,
                    &self.receiver,
                )
                .await
            {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(%error, "outbox: cannot claim notifications");
                    self.idle(self.outbox.poll_interval, &shutdown).await;
                    continue;
                }
            };
            let groups = match self
                .store
                .due_groups(&self.receiver, now, self.outbox.batch_size)
                .await
            {
                Ok(groups) => groups,
                Err(error) => {
                    tracing::warn!(%error, "outbox: cannot find the groups due");
                    Vec::new()
                }
            };
            if claimed.is_empty() && groups.is_empty() {
                self.idle(self.outbox.poll_interval, &shutdown).await;
                continue;
            }
            if !self.deliver_alone(claimed, &shutdown).await {
                continue;
            }
            for key in groups {
                if !self.deliver_group(&key, &shutdown).await {
                    break;
                }
            }
        }
        tracing::info!("outbox dispatcher stopped");
    }

    /// How long a claim holds a row.
    fn lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.outbox.lease).unwrap_or(chrono::Duration::MAX)
    }

    /// Whether nothing may be sent now (shutdown, or the breaker open): how long to wait.
    fn blocked(&mut self, shutdown: &Shutdown) -> Option<Duration> {
        if shutdown.is_triggered() {
            return Some(Duration::ZERO);
        }
        let refused = self.breaker.try_acquire(Instant::now()).err();
        self.observe_breaker();
        refused
    }

    /// Gives `rows` back unsent (due at once, no attempt counted), hands what is due over to fallbacks, and waits
    /// `wait` (at most `max_backoff`) or for shutdown.
    async fn back_off(&self, rows: &[Notification], wait: Duration, shutdown: &Shutdown) {
        let held: Vec<(i64, DateTime<Utc>)> = rows
            .iter()
            .map(|row| (row.id, row.next_attempt_at))
            .collect();
        self.finish_all(&held, DeliveryRecord::Released { at: model::now() })
            .await;
        self.hand_over().await;
        if !shutdown.is_triggered() {
            tokio::select! {
                () = tokio::time::sleep(wait.min(self.outbox.max_backoff)) => {}
                () = shutdown.clone().wait() => {}
            }
        }
    }

    /// Delivers `claimed` rows one message each, in order. False when it stopped early (shutdown, or the breaker
    /// open), the rest given back.
    async fn deliver_alone(&mut self, claimed: Vec<Notification>, shutdown: &Shutdown) -> bool {
        let lease = self.lease();
        let mut rows = claimed.into_iter();
        while let Some(mut row) = rows.next() {
            if let Some(wait) = self.blocked(shutdown) {
                let rest: Vec<Notification> = std::iter::once(row).chain(rows).collect();
                self.back_off(&rest, wait, shutdown).await;
                return false;
            }
            // Renew the lease right before sending: a batch may outlast the lease of its claim, and a row whose
            // lease ran out may have been taken by another dispatcher.
            let until = model::now() + lease;
            match self
                .store
                .renew_lease(row.id, row.next_attempt_at, until)
                .await
            {
                Ok(true) => row.next_attempt_at = until,
                Ok(false) => {
                    tracing::warn!(
                        notification = row.id,
                        "outbox: lease lost, another dispatcher has the row"
                    );
                    continue;
                }
                Err(error) => {
                    tracing::warn!(notification = row.id, %error, "outbox: cannot renew the lease");
                    continue;
                }
            }
            let span = delivery_span(&row, self.sender.span_name());
            let delivery = self.deliver(&row).instrument(span.clone()).await;
            record_on_span(&span, &delivery);
            self.finish(&row, delivery).instrument(span).await;
        }
        true
    }

    /// Delivers the due notifications of group `key`: as one message once the group's `group_interval` has passed
    /// since its last message, else later. False when it stopped early (shutdown, or the breaker open).
    async fn deliver_group(&mut self, key: &str, shutdown: &Shutdown) -> bool {
        let now = model::now();
        let lease = self.lease();
        // Rows that joined the group within its wait are due by now plus the wait, which is shorter than half the
        // lease (configuration check): rows another dispatcher holds are due later still.
        let horizon = now + lease / 2;
        let rows = match self
            .store
            .claim_group(&self.receiver, key, horizon, now + lease, MAX_GROUP_ROWS)
            .await
        {
            Ok(rows) if rows.is_empty() => return true,
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(group = key, %error, "outbox: cannot claim the group's notifications");
                return true;
            }
        };
        let held: Vec<(i64, DateTime<Utc>)> = rows
            .iter()
            .map(|row| (row.id, row.next_attempt_at))
            .collect();
        let policy = self.policy.clone();
        let route = policy.route_at(rows[0].route);
        let interval = route.map_or(DEFAULT_GROUP_INTERVAL, |route| route.group_interval());
        let next = match self.store.group_sent_at(&self.receiver, key).await {
            Ok(last) => last.and_then(|last| {
                chrono::Duration::from_std(interval)
                    .ok()
                    .and_then(|interval| last.checked_add_signed(interval))
            }),
            Err(error) => {
                tracing::warn!(group = key, %error, "outbox: cannot find the group's last message");
                Some(
                    now + chrono::Duration::from_std(self.outbox.poll_interval).unwrap_or_default(),
                )
            }
        };
        if let Some(next) = next.filter(|next| *next > now) {
            // Batched by group_interval: these go with the group's next message.
            self.finish_all(&held, DeliveryRecord::Released { at: next })
                .await;
            return true;
        }
        if rows.len() == 1 || !self.sender.groups() {
            return self.deliver_alone(rows, shutdown).await;
        }
        if let Some(wait) = self.blocked(shutdown) {
            self.back_off(&rows, wait, shutdown).await;
            return false;
        }
        let mut items = Vec::with_capacity(rows.len());
        let mut sent = Vec::with_capacity(rows.len());
        for (row, held) in rows.iter().zip(&held) {
            match Item::of(row) {
                Ok(item) => {
                    items.push(item);
                    sent.push(*held);
                }
                Err(error) => {
                    let record = self.give_up(row, error);
                    self.finish(row, record).await;
                }
            }
        }
        let Some(first) = items.first() else {
            return true;
        };
        let labels = route
            .map(|route| route.group_labels(&first.alert))
            .unwrap_or_default();
        let batch = Batch::new(key.to_owned(), labels, items);
        let span = group_span(key, &rows, self.sender.span_name());
        let attempts = rows
            .iter()
            .map(|row| row.attempts)
            .max()
            .unwrap_or_default();
        let created_at = rows.iter().map(|row| row.created_at).min().unwrap_or(now);
        let outcome = self.send_group(&batch).instrument(span.clone()).await;
        let delivery = match outcome {
            Ok(outcome) => self.record(outcome, attempts, created_at, &batch.key),
            Err(record) => record,
        };
        record_on_span(&span, &delivery);
        if let DeliveryRecord::Sent { .. } = delivery {
            tracing::info!(group = key, alerts = batch.items.len(), notifications = sent.len(),
                receiver = %self.receiver, "group notification sent");
        }
        self.finish_all(&sent, delivery).instrument(span).await;
        true
    }

    /// Sends a group's notifications as one message: the outcome, or, when nothing could be sent, what to record.
    async fn send_group(&self, batch: &Batch) -> Result<SendOutcome, DeliveryRecord> {
        match &self.sender {
            Sender::Slack { client, config } => {
                let severity = batch.severity();
                let Some(route) = config.channel_for(severity) else {
                    self.metrics.failed.inc();
                    return Err(DeliveryRecord::Failed {
                        error: format!("severity {severity} is not routed to any channel"),
                    });
                };
                let message = render_group(batch, config);
                // A group's first message opens a conversation; later ones (resolutions, reminders) continue the
                // first alert's.
                let thread = match batch.items.first() {
                    Some(first) if client.uses_web_api() && !batch.announces() => {
                        match self.store.thread_of(first.alert.id, &self.receiver).await {
                            Ok(thread) => thread,
                            Err(error) => {
                                return Err(self.retry_later(
                                    0,
                                    format!("cannot find the thread of the first message: {error}"),
                                ));
                            }
                        }
                    }
                    _ => None,
                };
                // As for one alert: the first message is edited before the reply is posted.
                let changes_state = batch.items.iter().any(|item| item.event == Event::Resolved);
                let edit = batch
                    .items
                    .first()
                    .filter(|_| changes_state && config.update_in_place);
                Ok(self
                    .post_to_slack(client, config, &message, route, thread, edit)
                    .await)
            }
            Sender::Webhook(client) => {
                let message = payload::group(
                    &self.receiver,
                    batch,
                    client.max_alerts(),
                    client.external_url(),
                );
                Ok(client.send(&message).await)
            }
            Sender::Email(client) => Ok(client.send_group(batch).await),
            // Never grouped (see `Sender::groups`).
            Sender::PagerDuty(_) => Err(DeliveryRecord::Failed {
                error: "PagerDuty takes no group".to_owned(),
            }),
        }
    }

    /// Sends one notification and says what became of it.
    async fn deliver(&mut self, row: &Notification) -> DeliveryRecord {
        let item = match Item::of(row) {
            Ok(item) => item,
            Err(error) => return self.give_up(row, error),
        };
        let outcome = match self.send(row, &item).await {
            Ok(outcome) => outcome,
            Err(record) => return record,
        };
        let what = format!("notification {} of alert {}", row.id, item.alert.id);
        self.record(outcome, row.attempts, row.created_at, &what)
    }

    /// What to record of a message's `outcome` (its notifications tried `attempts` times before, the oldest made
    /// at `created_at`; `what` names it in logs), counting it in the breaker, the status and the metrics.
    fn record(
        &mut self,
        outcome: SendOutcome,
        attempts: i32,
        created_at: DateTime<Utc>,
        what: &str,
    ) -> DeliveryRecord {
        let at = model::now();
        let age = (at - created_at).to_std().unwrap_or_default();
        let attempts = attempts + 1;
        match outcome {
            SendOutcome::Accepted { ts, channel } => {
                self.breaker.on_success(Instant::now());
                self.observe_breaker();
                self.status.delivered();
                self.count("success");
                self.metrics.delivery.observe(age.as_secs_f64());
                tracing::info!(what, receiver = %self.receiver, "notification sent");
                DeliveryRecord::Sent { at, channel, ts }
            }
            SendOutcome::Transient {
                reason,
                retry_after,
            } => {
                self.breaker.on_failure(Instant::now());
                self.observe_breaker();
                self.status.failed(&reason);
                self.count("failure");
                if age > self.outbox.max_age {
                    return self.give_up_on(
                        what,
                        format!("{reason} (undelivered after {:?})", self.outbox.max_age),
                    );
                }
                let wait = self
                    .outbox
                    .backoff(attempts)
                    .max(retry_after.unwrap_or_default());
                tracing::warn!(what, attempts, %reason, retry_in = ?wait,
                    receiver = %self.receiver, "delivery failed, will retry");
                DeliveryRecord::Retry {
                    at: at + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX),
                    error: reason,
                }
            }
            SendOutcome::Permanent { reason } => {
                // The receiver answered: it is up, and the fault is ours (configuration or message).
                self.breaker.on_success(Instant::now());
                self.observe_breaker();
                self.status.failed(&reason);
                self.count("failure");
                if attempts >= i32::try_from(self.outbox.max_attempts).unwrap_or(i32::MAX) {
                    return self.give_up_on(what, reason);
                }
                let wait = self.outbox.backoff(attempts);
                tracing::warn!(what, attempts, %reason, retry_in = ?wait,
                    receiver = %self.receiver, "the receiver refused the notification, will retry");
                DeliveryRecord::Retry {
                    at: at + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX),
                    error: reason,
                }
            }
        }
    }

    /// A try later, after the backoff of a row tried `attempts` times, for `error`.
    fn retry_later(&self, attempts: i32, error: String) -> DeliveryRecord {
        let wait = self.outbox.backoff(attempts + 1);
        DeliveryRecord::Retry {
            at: model::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX),
            error,
        }
    }

    /// Sends `row` (read as `item`) to the receiver: the outcome, or, when nothing could be sent, what to record.
    async fn send(&self, row: &Notification, item: &Item) -> Result<SendOutcome, DeliveryRecord> {
        let alert = &item.alert;
        let event = item.event;
        match &self.sender {
            Sender::Slack { client, config } => {
                let Some(route) = config.channel_for(alert.severity) else {
                    return Err(self.give_up(
                        row,
                        format!("severity {} is not routed to any channel", alert.severity),
                    ));
                };
                let message = render(
                    alert,
                    event,
                    item.actor.as_deref(),
                    item.note.as_deref(),
                    config,
                );
                let thread = if client.uses_web_api() && event != Event::Created {
                    match self.store.thread_of(alert.id, &self.receiver).await {
                        Ok(thread) => thread,
                        // Try again later rather than post the follow-up outside its thread.
                        Err(error) => {
                            return Err(self.retry_later(
                                row.attempts,
                                format!("cannot find the thread of the first message: {error}"),
                            ));
                        }
                    }
                } else {
                    None
                };
                // The first message shows the alert's state.
                let changes_state = matches!(
                    event,
                    Event::Acknowledged | Event::Assigned | Event::Resolved
                );
                let edit = Some(item).filter(|_| changes_state && config.update_in_place);
                Ok(self
                    .post_to_slack(client, config, &message, route, thread, edit)
                    .await)
            }
            Sender::Webhook(client) => {
                let change = payload::Change {
                    event: event.as_str(),
                    actor: item.actor.as_deref(),
                    note: item.note.as_deref(),
                };
                let message = payload::notification(
                    &self.receiver,
                    alert,
                    change,
                    client.max_alerts(),
                    client.external_url(),
                );
                Ok(client.send(&message).await)
            }
            Sender::PagerDuty(client) => {
                match client.event(alert, event, item.actor.as_deref(), item.note.as_deref()) {
                    Some(message) => Ok(client.send(&message).await),
                    // No PagerDuty action for this change: nothing to send.
                    None => Ok(SendOutcome::Accepted {
                        ts: None,
                        channel: None,
                    }),
                }
            }
            Sender::Email(client) => Ok(client
                .send(
                    row.id,
                    alert,
                    event,
                    item.actor.as_deref(),
                    item.note.as_deref(),
                )
                .await),
        }
    }

    /// Posts `message` to Slack: in `thread` (the channel and timestamp of the first message of its alert or group)
    /// when there is one, else to `channel`. With `edit`, that first message is edited first to show the state of
    /// `edit`'s alert: before the post, so that a retry (the edit failed for now) posts nothing twice; an edit
    /// Slack refuses for good is logged, and the message still goes.
    async fn post_to_slack(
        &self,
        client: &SlackClient,
        config: &SlackConfig,
        message: &Message,
        channel: &str,
        thread: Option<(String, String)>,
        edit: Option<&Item>,
    ) -> SendOutcome {
        if let (Some((thread_channel, ts)), Some(item)) = (&thread, edit) {
            match self
                .edit_first(client, config, item, thread_channel, ts)
                .await
            {
                SendOutcome::Accepted { .. } => {}
                transient @ SendOutcome::Transient { .. } => return transient,
                SendOutcome::Permanent { reason } => tracing::warn!(
                    alert_id = %item.alert.id, %reason,
                    "cannot edit the first Slack message; replying in its thread only"
                ),
            }
        }
        let (channel, thread_ts) = match thread {
            Some((channel, ts)) => (channel, Some(ts)),
            None => (channel.to_owned(), None),
        };
        client.send(message, &channel, thread_ts.as_deref()).await
    }

    /// Edits the first message `ts` in `channel` of `item`'s alert to show its state: the alert's own message as
    /// `item` tells it, or, when it was a group's message, the group's again with each alert's current state.
    async fn edit_first(
        &self,
        client: &SlackClient,
        config: &SlackConfig,
        item: &Item,
        channel: &str,
        ts: &str,
    ) -> SendOutcome {
        let alerts = match self.store.message_alerts(&self.receiver, ts).await {
            Ok(alerts) => alerts,
            Err(error) => {
                return SendOutcome::Transient {
                    reason: format!("cannot find the alerts of the first message: {error}"),
                    retry_after: None,
                };
            }
        };
        let route = alerts.first().and_then(|(_, route)| *route);
        if alerts.len() <= 1 {
            let message = render(
                &item.alert,
                item.event,
                item.actor.as_deref(),
                item.note.as_deref(),
                config,
            );
            return client.update(&message, channel, ts).await;
        }
        if alerts.len() > MAX_EDITED {
            // Too many alerts to read again for each change: the thread tells.
            return SendOutcome::Accepted {
                ts: None,
                channel: None,
            };
        }
        let mut items = Vec::with_capacity(alerts.len());
        for (id, _) in alerts {
            match self.store.get(id).await {
                Ok(Some(alert)) => items.push(Item::current(alert)),
                // Deleted since: no longer listed.
                Ok(None) => {}
                Err(error) => {
                    return SendOutcome::Transient {
                        reason: format!("cannot read the alerts of the first message: {error}"),
                        retry_after: None,
                    };
                }
            }
        }
        let Some(first) = items.first() else {
            return SendOutcome::Accepted {
                ts: None,
                channel: None,
            };
        };
        let labels = self
            .policy
            .route_at(route)
            .map(|route| route.group_labels(&first.alert))
            .unwrap_or_default();
        let batch = Batch::new(String::new(), labels, items);
        client
            .update(&render_group(&batch, config), channel, ts)
            .await
    }

    fn give_up(&self, row: &Notification, error: String) -> DeliveryRecord {
        self.give_up_on(
            &format!("notification {} of alert {}", row.id, row.alert_id),
            error,
        )
    }

    fn give_up_on(&self, what: &str, error: String) -> DeliveryRecord {
        self.metrics.failed.inc();
        tracing::error!(what, receiver = %self.receiver, %error, "notification failed for good");
        DeliveryRecord::Failed { error }
    }

    /// Records `delivery`, retrying a few times: a sent row that stays pending would be sent again.
    async fn finish(&self, row: &Notification, delivery: DeliveryRecord) {
        self.finish_all(&[(row.id, row.next_attempt_at)], delivery)
            .await;
    }

    /// Records `delivery` for the rows `held` (id, end of this dispatcher's lease) in one transaction, retrying a
    /// few times: a sent row that stays pending would be sent again.
    async fn finish_all(&self, held: &[(i64, DateTime<Utc>)], delivery: DeliveryRecord) {
        for attempt in 1..=5 {
            match self.store.finish_notifications(held, &delivery).await {
                Ok(finished) => {
                    if finished < held.len() as u64 {
                        tracing::warn!(
                            lost = held.len() as u64 - finished,
                            "outbox: lease lost before the delivery was recorded"
                        );
                    }
                    return;
                }
                Err(error) => {
                    tracing::warn!(notifications = held.len(), attempt, %error, "outbox: cannot record delivery");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
            }
        }
    }
}

/// Records a delivery's outcome on its span.
fn record_on_span(span: &tracing::Span, delivery: &DeliveryRecord) {
    let (outcome, error) = match delivery {
        DeliveryRecord::Sent { .. } => ("sent", None),
        DeliveryRecord::Retry { error, .. } => ("retry", Some(error.as_str())),
        DeliveryRecord::Failed { error } => ("failed", Some(error.as_str())),
        DeliveryRecord::Released { .. } => ("released", None),
    };
    span.record("outcome", outcome);
    if let Some(error) = error {
        span.record("otel.status_code", "ERROR");
        span.record("error", error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_former_backoff_keys_are_still_read() {
        let config: OutboxConfig =
            yaml_serde::from_str("backoff_initial: 2s\nbackoff_max: 9s\n").expect("former keys");
        assert_eq!(config.min_backoff, Duration::from_secs(2));
        assert_eq!(config.max_backoff, Duration::from_secs(9));
        let config: OutboxConfig =
            yaml_serde::from_str("min_backoff: 3s\nmax_backoff: 7s\n").expect("keys");
        assert_eq!(config.min_backoff, Duration::from_secs(3));
        assert_eq!(config.max_backoff, Duration::from_secs(7));
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let config = OutboxConfig {
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            ..OutboxConfig::default()
        };
        for attempts in 1..=8 {
            let full = Duration::from_secs(1 << (attempts - 1)).min(Duration::from_secs(10));
            let wait = config.backoff(attempts);
            assert!(
                wait >= full / 2 && wait <= full,
                "attempt {attempts}: {wait:?} vs {full:?}"
            );
        }
        assert!(config.backoff(1_000) <= Duration::from_secs(10));
    }
}
