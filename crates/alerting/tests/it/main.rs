//! The alerting service's integration tests, in one test binary (one link of sqlx and kube instead of one per
//! file): the API suite and the rule engines' APIs on both stores, notifications against a fake Slack, a webhook
//! receiver, a PagerDuty stand-in and a real SMTP server, their reminders and escalations, silences,
//! and the pod watcher against a fake Kubernetes API server.

// First, for `on_both_stores!` in the modules after it.
#[macro_use]
mod support;

mod alertmanager;
mod api;
mod email;
mod follow_ups;
mod grafana_webhook;
mod grouping;
mod kube_watcher;
mod notifications;
mod pagerduty;
mod silences;
mod slack_client;
mod webhook_client;
