//! `gomon`: one binary, a subcommand per role.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

mod up;

use clap::{Parser, Subcommand};
use gomon_runtime::logging::LogFormat;
use gomon_runtime::shutdown::Shutdown;
use gomon_runtime::telemetry::Tracing;
use serde::{Deserialize, Serialize};

/// GoMon: collect, ship, store and alert on Kubernetes metrics.
#[derive(Debug, Parser)]
#[command(name = "gomon", version, about)]
struct Cli {
    /// YAML configuration file; every key can also be set by a GOMON_... environment variable.
    #[arg(long, short, global = true, env = "GOMON_CONFIG")]
    config: Option<PathBuf>,
    /// Log lines: `json` (one object per line), `text` (for a person), or `auto`: text for `gomon up` at a
    /// terminal, JSON otherwise.
    #[arg(long, global = true, env = "GOMON_LOG_FORMAT", value_enum, default_value_t = LogFormatArg::Auto)]
    log_format: LogFormatArg,
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// The alerting service: REST API over PostgreSQL (or embedded SQLite), with /metrics and health endpoints.
    Alerting,
    /// The node agent: collects host metrics every interval and publishes them to Kafka; serves them on /metrics.
    Agent,
    /// The aggregator: consumes the agents' batches from Kafka and writes them to VictoriaMetrics by remote write.
    Aggregator,
    /// Everything in one process on embedded defaults: agent, in-process queue, aggregator, alerting on SQLite.
    Up,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormatArg {
    Auto,
    Json,
    Text,
}

/// The whole configuration file: one section per role.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// `gomon alerting`.
    alerting: gomon_alerting::Config,
    /// `gomon agent`.
    agent: gomon_agent::AgentConfig,
    /// `gomon aggregator`.
    aggregator: gomon_aggregator::AggregatorConfig,
    /// Traces of every role (OTLP export).
    tracing: gomon_runtime::telemetry::TracingConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = gomon_runtime::config::load::<Config>(cli.config.as_deref());
    let registry = gomon_runtime::metrics::registry();
    let service = match cli.role {
        Role::Alerting => "gomon-alerting",
        Role::Agent => "gomon-agent",
        Role::Aggregator => "gomon-aggregator",
        Role::Up => "gomon",
    };
    let settings = match &loaded {
        Ok(config) => config
            .tracing
            .settings(service, |name| std::env::var(name).ok()),
        Err(_) => Ok(None),
    };
    let tracing = match settings {
        Ok(Some(settings)) => Tracing::start(settings, &registry).map(Some),
        Ok(None) => Ok(None),
        Err(error) => Err(error),
    };
    let tracer = tracing
        .as_ref()
        .ok()
        .and_then(Option::as_ref)
        .map(Tracing::tracer);
    let log_format = match cli.log_format {
        LogFormatArg::Json => LogFormat::Json,
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Auto if matches!(cli.role, Role::Up) && std::io::stdout().is_terminal() => {
            LogFormat::Text
        }
        LogFormatArg::Auto => LogFormat::Json,
    };
    if let Err(error) = gomon_runtime::logging::init(tracer, log_format) {
        eprintln!("gomon: {error}");
        return ExitCode::from(2);
    }
    let (config, tracing) = match (loaded, tracing) {
        (Ok(config), Ok(tracing)) => (config, tracing),
        (Err(error), _) => {
            tracing::error!(%error, "cannot start");
            eprintln!("gomon: {error}");
            return ExitCode::from(2);
        }
        (_, Err(error)) => {
            tracing::error!(%error, "cannot start");
            eprintln!("gomon: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    let checked = match cli.role {
        Role::Alerting => config.alerting.check().map_err(anyhow::Error::from),
        Role::Agent => config.agent.check().map_err(anyhow::Error::from),
        Role::Aggregator => config.aggregator.check().map_err(anyhow::Error::from),
        Role::Up => config
            .alerting
            .check()
            .map_err(anyhow::Error::from)
            .and_then(|()| Ok(config.agent.check()?))
            .and_then(|()| Ok(config.aggregator.check()?)),
    };
    if let Err(error) = checked {
        tracing::error!(error = format!("{error:#}"), "cannot start");
        eprintln!("gomon: invalid configuration: {error:#}");
        return ExitCode::from(2);
    }
    // The agent runs on every node and does little at a time: one thread keeps its CPU and memory small.
    let runtime = match cli.role {
        Role::Agent => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Runtime::new(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gomon: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = Shutdown::on_signal();
        match cli.role {
            Role::Alerting => gomon_alerting::run(config.alerting, registry, shutdown).await,
            Role::Agent => gomon_agent::run(config.agent, registry, shutdown).await,
            Role::Aggregator => gomon_aggregator::run(config.aggregator, registry, shutdown).await,
            Role::Up => up::run(config, registry, shutdown).await,
        }
    });
    if let Some(tracing) = tracing {
        tracing.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "stopped with an error");
            eprintln!("gomon: {error:#}");
            ExitCode::FAILURE
        }
    }
}
