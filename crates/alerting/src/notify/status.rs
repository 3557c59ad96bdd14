//! What delivery looks like from outside: each receiver's circuit breaker and when it last changed, its last error
//! and its last success. The dispatcher writes it; `GET /api/v1/notifications/status` and the console read it.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::breaker::BreakerState;
use crate::model;

/// The delivery status of the receivers, shared between the dispatcher and the API.
#[derive(Clone, Debug, Default)]
pub struct DeliveryStatus(Arc<Mutex<ReceiverStatus>>);

/// One receiver's state, as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReceiverStatus {
    /// The receiver: `slack`.
    pub name: String,
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
    /// The status of a configured receiver, its breaker closed since now.
    pub fn configured() -> Self {
        let status = Self::default();
        status.update(|receiver| {
            receiver.configured = true;
            receiver.breaker.since = Some(model::now());
        });
        status
    }

    fn update(&self, change: impl FnOnce(&mut ReceiverStatus)) {
        change(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
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

    /// The receivers' status now.
    pub fn get(&self) -> ReceiverStatus {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_keeps_the_time_it_changed() {
        let status = DeliveryStatus::configured();
        let started = status.get();
        assert!(started.configured);
        assert_eq!(started.breaker.state, "closed");
        status.breaker(BreakerState::Closed);
        assert_eq!(status.get().breaker, started.breaker);
        status.breaker(BreakerState::Open);
        let opened = status.get().breaker;
        assert_eq!(opened.state, "open");
        assert!(opened.since >= started.breaker.since);
        status.failed(&"x".repeat(10_000));
        let error = status.get().last_error.expect("an error");
        assert!(error.message.chars().count() <= 500);
        status.delivered();
        assert!(status.get().last_success_at.is_some());
        assert!(!DeliveryStatus::default().get().configured);
    }
}
