//! What delivery looks like from outside: each receiver's circuit breaker and when it last changed, its last error
//! and its last success. The dispatcher writes it; `GET /api/v1/notifications/status` and the console read it.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::breaker::BreakerState;
use crate::model;

/// The delivery status of the receivers, shared between the dispatchers and the API.
#[derive(Clone, Debug)]
pub struct DeliveryStatus(Arc<Mutex<Vec<ReceiverStatus>>>);

impl Default for DeliveryStatus {
    /// No receiver configured: one unconfigured `slack`, as the API has always shown it.
    fn default() -> Self {
        Self(Arc::new(Mutex::new(vec![ReceiverStatus::default()])))
    }
}

/// One receiver's part of a [`DeliveryStatus`], written by its dispatcher.
#[derive(Clone, Debug)]
pub struct ReceiverHandle {
    all: DeliveryStatus,
    index: usize,
}

/// One receiver's state, as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReceiverStatus {
    /// The receiver's name (`slack` for `alerting.slack`).
    pub name: String,
    /// Its type: `slack`, `webhook`, `pagerduty` or `email`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether it is configured; without it, notifications are stored and not sent.
    pub configured: bool,
    /// Its circuit breaker.
    pub breaker: BreakerStatus,
    /// The last delivery that failed, if any since start-up.
    pub last_error: Option<LastError>,
    /// When the last notification was delivered, if any since start-up.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Notifications waiting in the outbox (set when the API answers).
    pub pending: i64,
}

/// A circuit breaker's state and since when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BreakerStatus {
    /// `closed`, `open` or `half-open`.
    pub state: String,
    /// When it entered that state (start-up for a breaker that never changed).
    pub since: Option<DateTime<Utc>>,
}

/// A failed delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LastError {
    /// When.
    pub at: DateTime<Utc>,
    /// What the receiver answered, or why it could not be reached.
    pub message: String,
}

impl Default for ReceiverStatus {
    fn default() -> Self {
        Self {
            name: "slack".to_owned(),
            kind: "slack".to_owned(),
            configured: false,
            breaker: BreakerStatus {
                state: state_name(BreakerState::Closed).to_owned(),
                since: None,
            },
            last_error: None,
            last_success_at: None,
            pending: 0,
        }
    }
}

/// The name of a breaker state in the API.
fn state_name(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half-open",
    }
}

impl DeliveryStatus {
    /// The status of configured receivers, given as (name, type), their breakers closed since now.
    pub fn configured<'a>(receivers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let receivers = receivers
            .into_iter()
            .map(|(name, kind)| ReceiverStatus {
                name: name.to_owned(),
                kind: kind.to_owned(),
                configured: true,
                breaker: BreakerStatus {
                    state: state_name(BreakerState::Closed).to_owned(),
                    since: Some(model::now()),
                },
                ..ReceiverStatus::default()
            })
            .collect();
        Self(Arc::new(Mutex::new(receivers)))
    }

    /// The part of receiver `name`; `None` when there is no such receiver.
    pub fn receiver(&self, name: &str) -> Option<ReceiverHandle> {
        let index = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .position(|receiver| receiver.name == name)?;
        Some(ReceiverHandle {
            all: self.clone(),
            index,
        })
    }

    /// The receivers' status now, in configuration order.
    pub fn get(&self) -> Vec<ReceiverStatus> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ReceiverHandle {
    fn update(&self, change: impl FnOnce(&mut ReceiverStatus)) {
        let mut receivers = self.all.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(receiver) = receivers.get_mut(self.index) {
            change(receiver);
        }
    }

    /// Records the breaker's `state`, and the time when it differs from the last one recorded.
    pub fn breaker(&self, state: BreakerState) {
        self.update(|receiver| {
            if receiver.breaker.state != state_name(state) {
                receiver.breaker = BreakerStatus {
                    state: state_name(state).to_owned(),
                    since: Some(model::now()),
                };
            }
        });
    }

    /// Records a delivered notification.
    pub fn delivered(&self) {
        self.update(|receiver| receiver.last_success_at = Some(model::now()));
    }

    /// Records a delivery that failed with `message`.
    pub fn failed(&self, message: &str) {
        self.update(|receiver| {
            receiver.last_error = Some(LastError {
                at: model::now(),
                message: gomon_runtime::text::truncate(message, 500),
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_keeps_the_time_it_changed() {
        let status = DeliveryStatus::configured([("team", "slack"), ("hook", "webhook")]);
        let hook = status.receiver("hook").expect("hook");
        assert!(status.receiver("pager").is_none());
        let started = status.get()[1].clone();
        assert!(started.configured);
        assert_eq!(started.kind, "webhook");
        assert_eq!(started.breaker.state, "closed");
        hook.breaker(BreakerState::Closed);
        assert_eq!(status.get()[1].breaker, started.breaker);
        hook.breaker(BreakerState::Open);
        let opened = status.get()[1].breaker.clone();
        assert_eq!(opened.state, "open");
        assert!(opened.since >= started.breaker.since);
        assert_eq!(
            status.get()[0].breaker.state,
            "closed",
            "the other receiver's breaker"
        );
        hook.failed(&"x".repeat(10_000));
        let error = status.get()[1].last_error.clone().expect("an error");
        assert!(error.message.chars().count() <= 500);
        hook.delivered();
        assert!(status.get()[1].last_success_at.is_some());
        assert!(status.get()[0].last_success_at.is_none());
        let unconfigured = DeliveryStatus::default().get();
        assert_eq!(unconfigured.len(), 1);
        assert!(!unconfigured[0].configured);
    }
}
