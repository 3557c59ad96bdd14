//! Slack: configuration (`alerting.slack`, in `config.rs`), rendering of alert events as Block Kit messages
//! (`render.rs`), and the HTTP client that posts them through an incoming webhook or the Web API's
//! `chat.postMessage` and classifies the answers (`client.rs`).

mod client;
mod config;
mod render;

pub use super::outcome::{MAX_RETRY_AFTER, SendOutcome};
pub use client::SlackClient;
pub use config::{Route, SlackConfig};
pub use render::{
    Event, MAX_FIELD, MAX_HEADER, MAX_TEXT, Message, escape, event_actor, headline, render,
    render_group,
};
