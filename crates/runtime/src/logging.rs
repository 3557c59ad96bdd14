//! JSON logs on stdout, one object per line, filtered by `GOMON_LOG` (or `RUST_LOG`; default `info`).

use tracing_subscriber::EnvFilter;

/// Installs the global JSON log subscriber. Call once, first thing in `main`.
///
/// Returns the filter that was applied, or an error naming the variable when its value does not parse.
pub fn init() -> Result<String, String> {
    let (variable, directives) = ["GOMON_LOG", "RUST_LOG"]
        .iter()
        .find_map(|name| std::env::var(name).ok().map(|value| (*name, value)))
        .unwrap_or(("default", "info".to_string()));
    let filter = EnvFilter::builder()
        .parse(&directives)
        .map_err(|error| format!("invalid log filter in {variable}={directives:?}: {error}"))?;
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .init();
    Ok(directives)
}
