//! The alerting service alone, for benchmarks that must not build the whole `gomon` binary: listens on
//! `GOMON_BENCH_LISTEN` (default 127.0.0.1:8080) over PostgreSQL at `GOMON_BENCH_DATABASE_URL` (unset: SQLite in a
//! `gomon-data` directory), until SIGTERM or Ctrl-C.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = gomon_alerting::Config::default();
    let listen = std::env::var("GOMON_BENCH_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    config.listen = Some(listen.parse()?);
    config.database.url = std::env::var("GOMON_BENCH_DATABASE_URL")
        .ok()
        .map(Into::into);
    let (trigger, shutdown) = gomon_runtime::shutdown::Shutdown::new();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        trigger.fire();
    });
    gomon_alerting::run(config, gomon_runtime::metrics::registry(), shutdown).await
}
