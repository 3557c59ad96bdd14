//! Notifications: the policy that routes an alert's notifications to named receivers ([`policy`], the
//! `alerting.notify` section), the receivers (Slack in [`slack`], Alertmanager's webhook in [`webhook`], PagerDuty's
//! Events API v2 in [`pagerduty`], SMTP in [`email`]), and the
//! circuit breaker that pauses sending to a receiver while it is failing ([`breaker`]). The durable outbox the
//! notifications are queued in and the dispatcher that drains it live beside them, and the delivery status they
//! show ([`status`]).

pub mod breaker;
pub mod dispatcher;
pub mod email;
pub mod outcome;
pub mod pagerduty;
pub mod policy;
pub mod slack;
pub mod status;
pub mod webhook;

pub use status::DeliveryStatus;
