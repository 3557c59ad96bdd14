//! Notifications: the Slack client and its Block Kit rendering of alerts ([`slack`]), and the circuit breaker that
//! pauses sending while Slack is failing ([`breaker`]). The durable outbox the notifications are queued in and the
//! dispatcher that drains it live beside them, and the delivery status they show ([`status`]).

pub mod breaker;
pub mod dispatcher;
pub mod slack;
pub mod status;

pub use status::DeliveryStatus;
