//! `gomon up`: the whole platform in one process on embedded defaults.
//!
//! agent -> in-process queue -> aggregator -> `/federate` (and remote write when `aggregator.remote_write.url` is
//! set); the alerting service on SQLite in `alerting.database.data_dir` (or PostgreSQL when a URL is set); Slack
//! when configured, otherwise alert changes in the log; the pod watcher when a kubeconfig or an in-cluster service
//! account is found. One listener serves the API, the combined `/metrics` of every part and the host metrics on
//! `/federate`.
//!
//! Ctrl-C stops the agent first; the queue is drained into the aggregator, which writes what it holds within
//! `aggregator.shutdown_timeout` (a receiver that is down or refuses the writes does not hold it up longer); the
//! alerting service finishes its requests and closes the database.

use std::path::PathBuf;
use std::sync::Arc;

use gomon_agent::Outlet;
use gomon_aggregator::Aggregator;
use gomon_aggregator::pipeline::{SinkHealth, SinkState};
use gomon_aggregator::sinks::hosts::HostWindow;
use gomon_aggregator::sources::queue::QueueSource;
use gomon_alerting::console::hosts::{HostHistory, HostView, Measure};
use gomon_alerting::console::{ComponentStatus, Neighbour};
use gomon_runtime::shutdown::Shutdown;
use prometheus::Registry;

use crate::Config;

/// The aggregator's window of host measures, as the console's Hosts page reads it.
struct HostsOfAggregator(Arc<HostWindow>);

impl HostHistory for HostsOfAggregator {
    fn hosts(&self) -> Vec<HostView> {
        let measure = |measure: gomon_aggregator::sinks::hosts::Measure| Measure {
            now: measure.now,
            points: measure.points,
        };
        self.0
            .snapshot(chrono::Utc::now().timestamp_millis())
            .into_iter()
            .map(|host| HostView {
                host: host.host,
                last_seen: chrono::DateTime::from_timestamp_millis(host.last_ms),
                cpu: measure(host.cpu),
                memory: measure(host.memory),
                disk: measure(host.disk),
                network: measure(host.network),
            })
            .collect()
    }
}

/// The aggregator's remote write, as the console's Status page shows it.
struct AggregatorStatus {
    health: SinkHealth,
    remote_write: Option<String>,
}

impl Neighbour for AggregatorStatus {
    fn status(&self) -> Vec<ComponentStatus> {
        let (state, detail) = match (&self.remote_write, self.health.state()) {
            (None, _) => (
                "off",
                "no aggregator.remote_write.url: samples go to /federate and the Hosts page only"
                    .to_owned(),
            ),
            (Some(url), SinkState::Ok) => ("ok", format!("writing to {url}")),
            (Some(url), SinkState::Retrying) => (
                "retrying",
                format!("{url} is down or overloaded; samples wait and are retried"),
            ),
            (Some(url), SinkState::Blocked(reason)) => (
                "blocked",
                format!(
                    "{url} refuses the writes ({}); samples wait until the credentials or URL are fixed",
                    reason.reason()
                ),
            ),
        };
        vec![ComponentStatus {
            name: "Remote write".to_owned(),
            state: state.to_owned(),
            detail,
        }]
    }
}

/// Where a kubeconfig or in-cluster credentials are, if anywhere.
fn kubernetes_credentials() -> Option<String> {
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return Some("in-cluster service account".to_owned());
    }
    let path = std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".kube/config"))
        })?;
    path.is_file().then(|| path.display().to_string())
}

/// Runs every part until `shutdown` fires or one of them fails.
pub(crate) async fn run(
    mut config: Config,
    registry: Registry,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let kubernetes = if config.alerting.kubernetes.enabled {
        Some("as configured".to_owned())
    } else {
        let found = kubernetes_credentials();
        config.alerting.kubernetes.enabled = found.is_some();
        found
    };
    let authenticated = !config
        .alerting
        .auth
        .load_tokens()
        .map_err(|error| error.within("alerting.auth"))?
        .is_empty();
    let address = config.alerting.listen_addr(authenticated);
    let mut aggregator = Aggregator::new(&config.aggregator, &registry)?;
    let host_metrics = aggregator.federate_router();
    let host_window = HostsOfAggregator(aggregator.keep_host_window());
    let aggregator_status = AggregatorStatus {
        health: aggregator.remote_write_health(),
        remote_write: config
            .aggregator
            .remote_write
            .as_ref()
            .map(|remote| remote.url.clone()),
    };

    let store = match &config.alerting.database.url {
        Some(_) => "PostgreSQL (alerting.database.url)".to_owned(),
        None => {
            let dir = &config.alerting.database.data_dir;
            let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
            format!("SQLite in {}", shown.display())
        }
    };
    let slack = if config.alerting.slack.webhook_url.is_some()
        || config.alerting.slack.webhook_url_file.is_some()
        || config.alerting.slack.bot_token.is_some()
        || config.alerting.slack.bot_token_file.is_some()
    {
        "Slack".to_owned()
    } else {
        "the log (set GOMON_ALERTING__SLACK__WEBHOOK_URL for Slack)".to_owned()
    };
    let remote = config.aggregator.remote_write.as_ref().map_or(
        "off (set GOMON_AGGREGATOR__REMOTE_WRITE__URL)".to_owned(),
        |remote| remote.url.clone(),
    );
    let watcher = kubernetes.map_or_else(
        || "off: no kubeconfig or in-cluster service account found".to_owned(),
        |found| format!("on ({found})"),
    );
    let traces = gomon_runtime::telemetry::exporting_to().map_or(
        "off (set OTEL_EXPORTER_OTLP_ENDPOINT, e.g. Jaeger's http://HOST:4318)".to_owned(),
        str::to_owned,
    );
    eprintln!(
        "GoMon is up. Ctrl-C stops it.\n\
         \x20 console        http://{address}/\n\
         \x20 alerts API     http://{address}/api/v1/alerts\n\
         \x20 host metrics   http://{address}/federate   (this host, every {interval:?})\n\
         \x20 GoMon metrics  http://{address}/metrics\n\
         \x20 alerts stored  {store}\n\
         \x20 notifications  {slack}\n\
         \x20 remote write   {remote}\n\
         \x20 pod watcher    {watcher}\n\
         \x20 traces         {traces}",
        interval = config.agent.interval,
    );

    // The parts stop together: on Ctrl-C, or when one of them fails.
    let (stop, stopping) = Shutdown::new();
    let stop = Arc::new(stop);
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.wait().await;
            stop.fire();
        }
    });
    // At Ctrl-C the pipeline reads on until the agent has stopped and the queue is empty, writing within its grace.
    let (queue, queued) = tokio::sync::mpsc::channel(config.agent.buffer_batches.max(1));
    let agent = tokio::spawn({
        let registry = registry.clone();
        let stopping = stopping.clone();
        let stop = stop.clone();
        let agent_config = config.agent.clone();
        async move {
            let result = gomon_agent::run_with(
                agent_config,
                registry,
                stopping,
                Outlet::Queue(queue),
                false,
            )
            .await;
            if result.is_err() {
                stop.fire();
            }
            result
        }
    });
    let pipeline = tokio::spawn(aggregator.run(QueueSource::new(queued), stopping.clone()));
    let alerting = gomon_alerting::run_with(
        config.alerting,
        registry,
        stopping,
        gomon_alerting::Neighbours {
            routes: host_metrics,
            hosts: Some(Arc::new(host_window)),
            status: Some(Arc::new(aggregator_status)),
        },
    )
    .await;
    stop.fire();
    let agent = agent.await?;
    pipeline.await?;
    tracing::info!("gomon up stopped");
    alerting.and(agent)
}
