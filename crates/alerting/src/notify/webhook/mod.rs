//! The webhook receiver: Alertmanager's webhook payload (version 4) posted to a URL. Its settings (`config.rs`),
//! the payload made from a notification (`payload.rs`), and the HTTP client that posts it and classifies the
//! answer (`client.rs`).

mod client;
mod config;
pub mod payload;

pub use client::WebhookClient;
pub use config::{MAX_ALERTS_LIMIT, WebhookConfig};
