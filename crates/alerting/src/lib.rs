//! GoMon's alerting service: a REST API over a PostgreSQL or SQLite store, with deduplication, a lifecycle
//! (firing -> acknowledged -> resolved) and an audit trail.
//!
//! Data flows one way: [`api`] handlers and the Kubernetes pod watcher ([`pods`]) call the [`AlertService`] (in
//! [`service`]), which validates, applies the lifecycle rules of [`model`] and persists through [`store`]. Nothing
//! downstream knows what is upstream.

pub mod api;
pub mod config;
pub mod console;
pub mod error;
pub mod model;
pub mod notify;
pub mod pods;
pub mod rule_engines;
pub mod service;
pub mod silence;
pub mod store;

use std::time::Duration;

use std::sync::Arc;

use gomon_runtime::backoff::Backoff;
use gomon_runtime::http::SharedListener;
use gomon_runtime::shutdown::Shutdown;
use prometheus::Registry;
use tokio::net::TcpListener;

use crate::service::Notifications;

pub use config::Config;
pub use service::AlertService;
pub use store::Store;

/// Opens the store, retrying while the database cannot be reached, until `shutdown` fires.
pub async fn open_store(
    config: &store::DatabaseConfig,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<Store>> {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    loop {
        match Store::open(config).await {
            Ok(store) => return Ok(Some(store)),
            Err(error) if is_unreachable(&error) => {
                let delay = backoff.next_wait();
                tracing::warn!(%error, retry_in = ?delay, "database unreachable, retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.clone().wait() => return Ok(None),
                }
            }
            Err(error) => return Err(error),
        }
    }
}

fn is_unreachable(error: &anyhow::Error) -> bool {
    let sqlx_error = error.downcast_ref::<sqlx::Error>().or_else(|| {
        match error.downcast_ref::<sqlx::migrate::MigrateError>() {
            Some(sqlx::migrate::MigrateError::Execute(inner)) => Some(inner),
            _ => None,
        }
    });
    sqlx_error.is_some_and(error::is_unavailable)
}

/// Every `interval` until `shutdown` fires, resolves the open alerts whose end time has passed (alerts of rule
/// engines that stopped re-sending them) when one may have (see [`AlertService::resolve_expired_if_due`]), and
/// deletes the silences past their retention.
pub async fn sweep_expired(service: AlertService, interval: Duration, shutdown: Shutdown) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.clone().wait() => return,
        }
        match service.resolve_expired_if_due().await {
            Ok(None | Some(0)) => {}
            Ok(Some(resolved)) => tracing::info!(resolved, "resolved alerts past their endsAt"),
            Err(error) => tracing::warn!(%error, "expiry sweep failed; trying again next interval"),
        }
        match service.delete_old_silences().await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted silences past their retention"),
            Err(error) => {
                tracing::warn!(%error, "silence retention sweep failed; trying again next interval")
            }
        }
    }
}

/// Every `interval` until `shutdown` fires, sends the due reminders and escalation steps of firing, unacknowledged
/// alerts (see [`AlertService::follow_up`]), claiming them for `lease`.
pub async fn follow_ups(
    service: AlertService,
    interval: Duration,
    lease: Duration,
    shutdown: Shutdown,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.clone().wait() => return,
        }
        match service.follow_up(lease).await {
            Ok(0) => {}
            Ok(done) => tracing::debug!(done, "follow-ups of unacknowledged alerts done"),
            Err(error) => {
                tracing::warn!(%error, "follow-ups of unacknowledged alerts failed; trying again next interval")
            }
        }
    }
}

/// Runs the alerting service until `shutdown` fires: binds its listener, opens the store (answering
/// `/health/live` meanwhile, and 503 to everything else), serves the API, then stops accepting, finishes in-flight
/// requests and closes the pool, within `shutdown_timeout` of `shutdown` firing.
pub async fn run(config: Config, registry: Registry, shutdown: Shutdown) -> anyhow::Result<()> {
    run_with(config, registry, shutdown, Neighbours::default()).await
}

/// What a process that runs the alerting service beside other roles (`gomon up`) adds to it.
#[derive(Default)]
pub struct Neighbours {
    /// Routes served beside the API on the same listener (the aggregator's `/federate`).
    pub routes: axum::Router,
    /// The hosts' recent metrics, kept by the aggregator in the same process, for the console's Hosts page.
    pub hosts: Option<Arc<dyn console::hosts::HostHistory>>,
    /// The other roles' state, for the console's Status page.
    pub status: Option<Arc<dyn console::Neighbour>>,
}

/// [`run`], with what the other roles of the same process add (`gomon up`).
pub async fn run_with(
    config: Config,
    registry: Registry,
    shutdown: Shutdown,
    extra: Neighbours,
) -> anyhow::Result<()> {
    gomon_runtime::memory::without_fast_bins();
    let auth = api::Auth::new(
        config
            .auth
            .load_tokens()
            .map_err(|error| error.within("alerting.auth"))?,
    );
    let address = config.listen_addr(auth.enabled());
    let listener = TcpListener::bind(address)
        .await
        .map_err(|error| anyhow::anyhow!("alerting.listen: cannot listen on {address}: {error}"))?;
    let listener = SharedListener(Arc::new(listener));
    if auth.enabled() {
        tracing::info!(%address, "API tokens configured: every /api request needs a bearer token");
    } else {
        tracing::warn!(
            %address,
            "no API tokens configured: the API is open to anyone who can reach it (bound to loopback unless \
             alerting.listen says otherwise)"
        );
    }
    let (stop_starting, starting_done) = Shutdown::new();
    let starting = tokio::spawn(gomon_runtime::http::serve(
        listener.clone(),
        api::starting_router(),
        starting_done,
        config.http.clone(),
    ));
    let opened = open_store(&config.database, &shutdown).await;
    stop_starting.fire();
    starting.await??;
    let Some(store) = opened? else {
        return Ok(());
    };
    let notify_metrics = notify::dispatcher::NotifyMetrics::new(&registry);
    let mut service = AlertService::new(store.clone(), &registry)
        .with_alertmanager(config.alertmanager.clone())
        .with_counted_sources(&config.sources);
    let policy = config
        .policy()
        .map_err(|error| anyhow::anyhow!("invalid configuration: {error}"))?;
    let mut delivery = notify::DeliveryStatus::default();
    let dispatcher = if policy.receivers().is_empty() {
        tracing::info!(
            "no receiver configured (alerting.notify, or alerting.slack.webhook_url or bot_token): alert changes \
             are only logged"
        );
        None
    } else {
        let started = notify::dispatcher::Dispatchers::new(
            &policy,
            &store,
            &config.outbox,
            &notify_metrics,
            config.notify.is_some(),
        )?;
        delivery = started.status;
        let (dispatchers, wakes) = (started.dispatchers, started.wakes);
        tracing::info!(
            receivers = ?policy.receivers().iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            severities = ?policy.severities(),
            "notifications on: written to the outbox with each alert change, one row per receiver its routes \
             choose, delivered in the background"
        );
        service = service.with_notifications(Notifications::new(policy, wakes));
        // Owned by this future: if it is dropped, the dispatchers stop with it.
        let mut tasks = tokio::task::JoinSet::new();
        for dispatcher in dispatchers {
            tasks.spawn(dispatcher.run(shutdown.clone()));
        }
        tasks.spawn(follow_ups(
            service.clone(),
            config.outbox.poll_interval,
            config.outbox.lease,
            shutdown.clone(),
        ));
        Some(tasks)
    };
    if let Err(error) = service.refresh_gauges().await {
        tracing::warn!(%error, "alerting_active_alerts not initialised");
    }
    let reload = tokio::spawn(api::reload_tokens(
        config.auth.clone(),
        auth.clone(),
        registry.clone(),
        shutdown.clone(),
    ));
    let sweep = tokio::spawn(sweep_expired(
        service.clone(),
        config.alertmanager.sweep_interval,
        shutdown.clone(),
    ));
    let kube_metrics = crate::pods::watcher::KubeMetrics::new(&registry);
    let (watcher, watcher_health) = if config.kubernetes.enabled {
        let health = crate::pods::WatcherHealth::default();
        tracing::info!(
            namespaces = ?config.kubernetes.namespaces,
            all_namespaces = config.kubernetes.all_namespaces,
            leader_election = config.kubernetes.leader_election.enabled,
            "Kubernetes pod watcher on"
        );
        let task = tokio::spawn(crate::pods::run(
            service.clone(),
            config.kubernetes.clone(),
            kube_metrics,
            health.clone(),
            shutdown.clone(),
        ));
        (Some(task), Some(health))
    } else {
        (None, None)
    };
    let console = config.console.enabled.then(|| api::ConsoleLinks {
        jaeger_url: config
            .console
            .jaeger_url
            .clone()
            .or(config.slack.jaeger_url.clone()),
        grafana_url: config
            .console
            .grafana_url
            .clone()
            .or(config.slack.grafana_url.clone()),
    });
    let hosts = match extra.hosts {
        Some(history) => console::hosts::HostSource::Memory(history),
        None => console::hosts::HostSource::from_config(&config.console),
    };
    let components = api::Components {
        watcher: watcher_health,
        delivery,
        console,
        hosts,
        neighbour: extra.status,
    };
    let router = api::router_with(service, registry, auth, config.request_timeout, components)
        .merge(extra.routes);
    tracing::info!(address = %listener.0.local_addr()?, store = store.describe(), "alerting API listening");
    let stopped = async {
        let served =
            gomon_runtime::http::serve(listener, router, shutdown.clone(), config.http.clone())
                .await;
        sweep.await?;
        reload.await?;
        if let Some(watcher) = watcher {
            watcher.await?;
        }
        if let Some(mut dispatcher) = dispatcher {
            while let Some(stopped) = dispatcher.join_next().await {
                stopped?;
            }
        }
        store.close().await;
        anyhow::Ok(served?)
    };
    // From SIGTERM on, a database or a Slack that does not answer holds the exit up for the timeout at most.
    let overdue = async {
        shutdown.clone().wait().await;
        tokio::time::sleep(config.shutdown_timeout).await;
    };
    tokio::select! {
        result = stopped => {
            tracing::info!("alerting service stopped");
            result
        }
        () = overdue => {
            tracing::warn!(
                shutdown_timeout = ?config.shutdown_timeout,
                "alerting service stopped at its shutdown timeout: requests still waiting for the database were \
                 cut off, alerts of rule engines still queued are left to their next resend, and notifications not \
                 yet delivered stay in the outbox for the next start"
            );
            Ok(())
        }
    }
}
