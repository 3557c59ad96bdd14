//! The webhook receiver: Alertmanager's webhook payload (version 4) posted to a URL. Its settings
//! (`config.rs`).

mod config;

pub use config::{MAX_ALERTS_LIMIT, WebhookConfig};
