//! Notifications: the policy that routes an alert's notifications to named receivers ([`policy`], the
//! `alerting.notify` section), the receivers (Slack in [`slack`], Alertmanager's webhook in [`webhook`], PagerDuty's
//! Events API v2 in [`pagerduty`], SMTP in [`email`]), and the
//! circuit breaker that pauses sending to a receiver while it is failing ([`breaker`]). The durable outbox the
//! notifications are queued in and the dispatcher that drains it live beside them, and the delivery status they
//! show ([`status`]).

pub mod breaker;
pub mod dispatcher;
pub mod email;
pub mod group;
pub mod outcome;
pub mod pagerduty;
pub mod policy;
pub mod slack;
pub mod status;
pub mod webhook;

pub use status::DeliveryStatus;

use std::time::Duration;

use gomon_runtime::config::KeyError;
use gomon_runtime::http_client::{HttpTlsConfig, is_http_url};

/// The HTTP client of a receiver with `tls` settings (under the key `tls`) and `timeout`: redirects not followed,
/// GoMon's user agent. The error names the key within the receiver.
pub(crate) fn http_client(
    tls: &HttpTlsConfig,
    timeout: Duration,
) -> Result<reqwest::Client, KeyError> {
    let tls = tls.read("tls")?;
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("gomon-alerting/", env!("CARGO_PKG_VERSION")));
    tls.apply(builder)
        .build()
        .map_err(|error| KeyError::new("tls", format!("cannot build the HTTP client: {error}")))
}

/// The checks the webhook, PagerDuty and email receivers' settings share: a `timeout` of at least 1 ms, an
/// `external_url` that is an http(s) URL, and their `circuit_breaker`. The error names the key within the receiver.
pub(crate) fn check_common(
    timeout: Duration,
    external_url: Option<&str>,
    circuit_breaker: &breaker::BreakerConfig,
) -> Result<(), KeyError> {
    if timeout < Duration::from_millis(1) {
        return Err(KeyError::new(
            "timeout",
            format!("must be at least 1ms, not {timeout:?}"),
        ));
    }
    if let Some(url) = external_url.filter(|url| !is_http_url(url)) {
        return Err(KeyError::new(
            "external_url",
            format!("{url:?} is not an http(s) URL"),
        ));
    }
    circuit_breaker
        .check()
        .map_err(|error| error.within("circuit_breaker"))
}
