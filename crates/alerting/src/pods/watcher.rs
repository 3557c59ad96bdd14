//! The watcher task: connects to the API server, takes the Lease when leader election is on, runs one kube-rs watch
//! per namespace (or one for all), folds their events into a [`Tracker`] and carries its decisions out through the
//! alerting service. API errors are counted, shown on `/health/ready` and retried with backoff; a watch that receives
//! nothing for `watch_idle_timeout` is started again. Nothing here stops the service.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::{AbortHandle, BoxStream, SelectAll};
use gomon_runtime::backoff::Backoff;
use gomon_runtime::metrics::must;
use gomon_runtime::shutdown::Shutdown;
use k8s_openapi::api::core::v1::Pod;
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::activity::{ActivityLayer, WatchActivity};
use super::config::KubernetesConfig;
use super::lease::LeaseLock;
use super::state::{ACTOR, AlertKey, Plan, SOURCE, Tracker};
use crate::error::Error;
use crate::model::{self, Change};
use crate::service::AlertService;

/// The watcher's metrics.
#[derive(Clone, Debug)]
pub struct KubeMetrics {
    events: IntCounterVec,
    errors: IntCounter,
    restarts: IntCounterVec,
    failing: IntGaugeVec,
}

impl KubeMetrics {
    /// Registers `alerting_kube_watch_events_total{event}`, `alerting_kube_watch_errors_total`,
    /// `alerting_kube_watch_restarts_total{reason}` and `alerting_kube_pods_failing{namespace,reason}` in
    /// `registry`.
    pub fn new(registry: &Registry) -> Self {
        let events = must(IntCounterVec::new(
            Opts::new(
                "alerting_kube_watch_events_total",
                "Pod watch events received, by event (list_start, listed, list_done, applied, deleted).",
            ),
            &["event"],
        ));
        let errors = must(IntCounter::new(
            "alerting_kube_watch_errors_total",
            "Errors talking to the Kubernetes API server (connecting, listing, watching, the Lease).",
        ));
        let restarts = must(IntCounterVec::new(
            Opts::new(
                "alerting_kube_watch_restarts_total",
                "Watches dropped and started again (listed anew), by reason (idle: nothing received for \
                 watch_idle_timeout).",
            ),
            &["reason"],
        ));
        restarts.with_label_values(&["idle"]);
        let failing = must(IntGaugeVec::new(
            Opts::new(
                "alerting_kube_pods_failing",
                "Pods failing now, by namespace and reason, as the watcher sees them.",
            ),
            &["namespace", "reason"],
        ));
        must(registry.register(Box::new(events.clone())));
        must(registry.register(Box::new(errors.clone())));
        must(registry.register(Box::new(restarts.clone())));
        must(registry.register(Box::new(failing.clone())));
        Self {
            events,
            errors,
            restarts,
            failing,
        }
    }

    fn failing_pods(&self, plan: &Plan) {
        self.failing.reset();
        for ((namespace, reason), count) in &plan.failing_pods {
            self.failing
                .with_label_values(&[namespace.as_str(), reason.as_str()])
                .set(*count);
        }
    }
}

/// What the watcher is doing, as `/health/ready` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WatcherStatus {
    /// `starting`, `standby` (another replica holds the Lease), `listing`, `watching`, `restarting` (a watch
    /// received nothing for `watch_idle_timeout`; listing and watching again), `retrying` (the API server fails;
    /// backing off) or `stopped`.
    pub state: String,
    /// Since when.
    pub since: DateTime<Utc>,
    /// Whether this replica holds the Lease (absent without leader election).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<bool>,
    /// Pods being tracked.
    pub pods: usize,
    /// The last error, while `retrying`; which watch went silent, while `restarting`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The watcher's status, shared with the health endpoint.
#[derive(Clone, Debug)]
pub struct WatcherHealth(Arc<Mutex<WatcherStatus>>);

impl Default for WatcherHealth {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(WatcherStatus {
            state: "starting".to_owned(),
            since: model::now(),
            leader: None,
            pods: 0,
            last_error: None,
        })))
    }
}

impl WatcherHealth {
    /// The current status.
    pub fn get(&self) -> WatcherStatus {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WatcherStatus> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set(&self, state: &str, error: Option<String>) {
        let mut status = self.lock();
        if status.state != state {
            status.state = state.to_owned();
            status.since = model::now();
        }
        status.last_error = error;
    }

    fn leader(&self, leader: Option<bool>) {
        self.lock().leader = leader;
    }

    fn pods(&self, pods: usize) {
        self.lock().pods = pods;
    }
}

/// Waits `delay`; false if shutdown came first.
async fn pause(delay: Duration, shutdown: &Shutdown) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = shutdown.clone().wait() => false,
    }
}

/// Added to `watch_idle_timeout` for the client's read timeout: a silent watch is caught by the idle check first
/// (and listed anew); the read timeout bounds the other requests on a connection that died silently.
const READ_TIMEOUT_MARGIN: Duration = Duration::from_secs(30);

/// The API client: `kubeconfig` (and `context`) when set, else the in-cluster service account, `KUBECONFIG` or
/// `~/.kube/config`. Responses to the watched resources mark `activity`.
async fn client(config: &KubernetesConfig, activity: &WatchActivity) -> anyhow::Result<Client> {
    let options = KubeConfigOptions {
        context: config.context.clone(),
        ..KubeConfigOptions::default()
    };
    let mut kube_config = match (&config.kubeconfig, &config.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|error| {
                anyhow::anyhow!("alerting.kubernetes.kubeconfig {}: {error}", path.display())
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options).await?,
        (None, None) => kube::Config::infer().await?,
    };
    // The client's own retrying (up to 15 times, for up to minutes) would hide an outage from the health state
    // and hold a Lease renewal past the Lease's duration; the watcher backs off itself.
    kube_config.default_retry = false;
    // kube sets no read timeout: a request on a connection that died without a FIN or RST would wait forever.
    kube_config.read_timeout = Some(config.watch_idle_timeout + READ_TIMEOUT_MARGIN);
    // Counted from the request, not from when its pooled connection went idle.
    kube_config.reset_reader_on_write = true;
    Ok(ClientBuilder::try_from(kube_config)?
        .with_layer(&ActivityLayer(activity.clone()))
        .build())
}

fn identity(config: &KubernetesConfig) -> String {
    config
        .leader_election
        .identity
        .clone()
        .or_else(|| std::env::var("POD_NAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| format!("gomon-alerting-{}", uuid::Uuid::new_v4().simple()))
}

/// How a watching session ended.
enum Ended {
    Shutdown,
    LostLease,
    Failed,
}

/// Runs the watcher until `shutdown` fires. Never returns early on errors: it backs off and tries again.
pub async fn run(
    service: AlertService,
    config: KubernetesConfig,
    metrics: KubeMetrics,
    health: WatcherHealth,
    shutdown: Shutdown,
) {
    let mut backoff = Backoff::new(config.min_backoff, config.max_backoff);
    let identity = identity(&config);
    let activity = WatchActivity::default();
    loop {
        let client = match client(&config, &activity).await {
            Ok(client) => client,
            Err(error) => {
                metrics.errors.inc();
                tracing::warn!(%error, "Kubernetes API client not configured, retrying");
                health.set("retrying", Some(error.to_string()));
                if !pause(backoff.next_wait(), &shutdown).await {
                    break;
                }
                continue;
            }
        };
        let mut lock = config.leader_election.enabled.then(|| {
            let namespace = config
                .leader_election
                .lease_namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_owned());
            LeaseLock::new(
                Api::namespaced(client.clone(), &namespace),
                config.leader_election.lease_name.clone(),
                identity.clone(),
                config.leader_election.lease_duration,
            )
        });
        if let Some(lock) = lock.as_mut() {
            health.leader(Some(false));
            if !acquire(lock, &config, &metrics, &health, &shutdown).await {
                break;
            }
            health.leader(Some(true));
            tracing::info!(
                identity = lock.identity(),
                "holding the watcher Lease: watching pods"
            );
        }
        let mut session = Session {
            service: &service,
            config: &config,
            metrics: &metrics,
            health: &health,
            activity: &activity,
            tracker: Tracker::new(config.clone()),
            needs_adoption: false,
            restarting: BTreeMap::new(),
        };
        let ended = session.watch(&client, lock.as_mut(), &shutdown).await;
        // Whoever watches next reports the failing pods; this replica no longer knows them.
        metrics.failing.reset();
        health.pods(0);
        match ended {
            Ended::Shutdown => {
                if let Some(lock) = &lock {
                    // Bounded: an unreachable API server must not hold up the shutdown.
                    let release = tokio::time::timeout(Duration::from_secs(2), lock.release());
                    if release.await.is_err() {
                        tracing::warn!("could not release the watcher Lease in time");
                    }
                }
                break;
            }
            Ended::LostLease => {
                tracing::warn!("lost the watcher Lease: another replica watches now");
                health.leader(Some(false));
            }
            Ended::Failed => {
                if !pause(backoff.next_wait(), &shutdown).await {
                    break;
                }
            }
        }
    }
    health.set("stopped", None);
    tracing::info!("Kubernetes pod watcher stopped");
}

/// Waits until this replica holds the Lease; false if shutdown came first.
async fn acquire(
    lock: &mut LeaseLock,
    config: &KubernetesConfig,
    metrics: &KubeMetrics,
    health: &WatcherHealth,
    shutdown: &Shutdown,
) -> bool {
    loop {
        match lock.try_acquire_or_renew().await {
            Ok(true) => return true,
            Ok(false) => health.set("standby", None),
            Err(error) => {
                metrics.errors.inc();
                tracing::warn!(%error, "cannot read or take the watcher Lease, retrying");
                health.set("retrying", Some(format!("Lease: {error}")));
            }
        }
        if !pause(config.leader_election.renew_interval, shutdown).await {
            return false;
        }
    }
}

/// One watching session: from the first list until shutdown, a lost Lease or a dead stream.
struct Session<'a> {
    service: &'a AlertService,
    config: &'a KubernetesConfig,
    metrics: &'a KubeMetrics,
    health: &'a WatcherHealth,
    activity: &'a WatchActivity,
    tracker: Tracker,
    needs_adoption: bool,
    /// Watches restarted for being idle and not listed again yet, with what they watch.
    restarting: BTreeMap<usize, String>,
}

type Events = BoxStream<'static, (usize, Result<Event<Pod>, watcher::Error>)>;

/// What one watch stream watches: `monitoring` (or `all namespaces`), and its API.
type Target = (String, Api<Pod>);

impl Session<'_> {
    fn targets(&self, client: &Client) -> Vec<Target> {
        if self.config.all_namespaces {
            vec![("all namespaces".to_owned(), Api::all(client.clone()))]
        } else {
            self.config
                .namespaces
                .iter()
                .map(|namespace| {
                    (
                        namespace.clone(),
                        Api::namespaced(client.clone(), namespace),
                    )
                })
                .collect()
        }
    }

    fn watch_config(&self) -> watcher::Config {
        let mut watch_config = watcher::Config {
            // The default, and what keeps a quiet watch from looking idle.
            bookmarks: true,
            ..watcher::Config::default()
        };
        if let Some(selector) = &self.config.label_selector {
            watch_config = watch_config.labels(selector);
        }
        watch_config
    }

    /// Starts stream `index`: a list, then a watch. Aborting the handle drops it, connection included.
    fn start(
        &self,
        index: usize,
        api: &Api<Pod>,
        watch_config: &watcher::Config,
    ) -> (Events, AbortHandle) {
        self.activity.touch(api.resource_url());
        let (stream, abort) =
            futures::stream::abortable(watcher::watcher(api.clone(), watch_config.clone()));
        (stream.map(move |event| (index, event)).boxed(), abort)
    }

    /// Stream `index` received nothing for `watch_idle_timeout` and was started again.
    fn went_idle(&mut self, index: usize, watched: &str) {
        self.metrics.errors.inc();
        self.metrics.restarts.with_label_values(&["idle"]).inc();
        tracing::warn!(watch = watched, idle_timeout = ?self.config.watch_idle_timeout,
            "the pod watch received nothing, not even a bookmark: listing and watching again");
        self.restarting.insert(index, watched.to_owned());
        self.report_restarting();
    }

    fn report_restarting(&self) {
        let watches: Vec<&str> = self.restarting.values().map(String::as_str).collect();
        self.health.set(
            "restarting",
            Some(format!(
                "the pod watch of {} received nothing for {:?}, not even a bookmark; listing and watching again",
                watches.join(", "),
                self.config.watch_idle_timeout
            )),
        );
    }

    async fn watch(
        &mut self,
        client: &Client,
        mut lock: Option<&mut LeaseLock>,
        shutdown: &Shutdown,
    ) -> Ended {
        let targets = self.targets(client);
        let watch_config = self.watch_config();
        let mut events = SelectAll::new();
        let mut aborts = Vec::with_capacity(targets.len());
        for (index, (_, api)) in targets.iter().enumerate() {
            let (stream, abort) = self.start(index, api, &watch_config);
            events.push(stream);
            aborts.push(abort);
        }
        let activity = self.activity;
        let touch = |stream: usize| {
            if let Some((_, api)) = targets.get(stream) {
                activity.touch(api.resource_url());
            }
        };
        let mut unlisted: BTreeSet<usize> = (0..targets.len()).collect();
        let mut backoff = Backoff::new(self.config.min_backoff, self.config.max_backoff);
        let mut paused_until: Option<tokio::time::Instant> = None;
        let mut evaluation = tokio::time::interval(self.config.evaluation_interval);
        evaluation.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewal = tokio::time::interval(self.config.leader_election.renew_interval);
        renewal.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewed = Instant::now();
        self.health.set("listing", None);
        loop {
            let paused = paused_until.is_some();
            let idle_at = targets
                .iter()
                .map(|(_, api)| self.activity.last(api.resource_url()))
                .min()
                .unwrap_or_else(tokio::time::Instant::now)
                + self.config.watch_idle_timeout;
            tokio::select! {
                () = shutdown.clone().wait() => return Ended::Shutdown,
                () = async {
                    if let Some(until) = paused_until {
                        tokio::time::sleep_until(until).await;
                    }
                }, if paused => {
                    paused_until = None;
                    // Not polled while paused: that time is not the API server's silence.
                    (0..targets.len()).for_each(touch);
                }
                () = tokio::time::sleep_until(idle_at), if !paused => {
                    for (index, (watched, api)) in targets.iter().enumerate() {
                        if self.activity.last(api.resource_url()).elapsed() < self.config.watch_idle_timeout {
                            continue;
                        }
                        let (stream, abort) = self.start(index, api, &watch_config);
                        if let Some(old) = aborts.get_mut(index) {
                            std::mem::replace(old, abort).abort();
                        }
                        events.push(stream);
                        self.went_idle(index, watched);
                    }
                }
                next = events.next(), if !paused => match next {
                    Some((stream, Ok(event))) => {
                        touch(stream);
                        backoff.reset();
                        self.event(stream, event, &mut unlisted).await;
                    }
                    Some((stream, Err(error))) => {
                        touch(stream);
                        self.metrics.errors.inc();
                        tracing::warn!(%error, "Kubernetes watch error, backing off");
                        self.health.set("retrying", Some(error.to_string()));
                        paused_until = Some(tokio::time::Instant::now() + backoff.next_wait());
                    }
                    None => return Ended::Failed,
                },
                _ = evaluation.tick() => {
                    if unlisted.is_empty() {
                        self.evaluate().await;
                    }
                }
                _ = renewal.tick(), if lock.is_some() => {
                    if let Some(lock) = lock.as_deref_mut() {
                        match lock.try_acquire_or_renew().await {
                            Ok(true) => renewed = Instant::now(),
                            Ok(false) => return Ended::LostLease,
                            Err(error) => {
                                self.metrics.errors.inc();
                                tracing::warn!(%error, "cannot renew the watcher Lease");
                                // Stop before another replica may take it over.
                                if renewed.elapsed() >= self.config.leader_election.lease_duration {
                                    return Ended::LostLease;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    async fn event(&mut self, stream: usize, event: Event<Pod>, unlisted: &mut BTreeSet<usize>) {
        let now = model::now();
        let name = match event {
            Event::Init => {
                self.tracker.list_started(stream);
                if !self.restarting.contains_key(&stream) {
                    self.health.set("listing", None);
                }
                "list_start"
            }
            Event::InitApply(pod) => {
                self.tracker.listed(stream, pod);
                "listed"
            }
            Event::InitDone => {
                self.tracker.list_done(stream, now);
                unlisted.remove(&stream);
                if let Some(watched) = self.restarting.remove(&stream) {
                    tracing::info!(watch = %watched, "the idle pod watch is listed and watched again");
                }
                self.needs_adoption = true;
                "list_done"
            }
            Event::Apply(pod) => {
                self.tracker.apply(stream, pod, now);
                "applied"
            }
            Event::Delete(pod) => {
                self.tracker.delete(&pod);
                "deleted"
            }
        };
        self.metrics.events.with_label_values(&[name]).inc();
        self.health.pods(self.tracker.pod_count());
        if unlisted.is_empty() {
            if self.restarting.is_empty() {
                self.health.set("watching", None);
            } else {
                self.report_restarting();
            }
            if name == "list_done" {
                self.evaluate().await;
            }
        }
    }

    /// Reconciles with the store when a list completed, then decides and carries the decisions out.
    async fn evaluate(&mut self) {
        if self.needs_adoption {
            match self.service.open_from(SOURCE).await {
                Ok(alerts) => {
                    self.tracker.adopt(&alerts, model::now());
                    self.needs_adoption = false;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read open Kubernetes alerts; deciding after the next try");
                    return;
                }
            }
        }
        let plan = self.tracker.evaluate(model::now());
        self.metrics.failing_pods(&plan);
        for (key, new) in plan.create {
            match self.service.create(new, Some(ACTOR.to_owned())).await {
                Ok((alert, created)) => {
                    if created {
                        tracing::info!(alert_id = %alert.id, namespace = %key.namespace,
                            workload = %key.workload.name, reason = %key.reason, "pod failure alert opened");
                    }
                    self.tracker.opened(&key, alert.id);
                }
                Err(error) => {
                    tracing::warn!(%error, namespace = %key.namespace, workload = %key.workload.name,
                        reason = %key.reason, "cannot open the pod failure alert; retrying at the next evaluation");
                }
            }
        }
        for (key, id, note) in plan.resolve {
            self.resolve(&key, id, note).await;
        }
    }

    async fn resolve(&mut self, key: &AlertKey, id: uuid::Uuid, note: String) {
        let change = Change::Resolve {
            by: None,
            note: Some(note),
        };
        match self
            .service
            .change(id, change, Some(ACTOR.to_owned()))
            .await
        {
            Ok(_) => {
                tracing::info!(alert_id = %id, namespace = %key.namespace, workload = %key.workload.name,
                    reason = %key.reason, "pod failure alert resolved");
                self.tracker.resolved(key);
            }
            // Resolved or deleted by someone else meanwhile: nothing left to do.
            Err(Error::Conflict(_) | Error::NotFound(_)) => self.tracker.resolved(key),
            Err(error) => {
                tracing::warn!(%error, alert_id = %id, "cannot resolve the pod failure alert; retrying at the next evaluation");
            }
        }
    }
}
