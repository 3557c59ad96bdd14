//! A circuit breaker in front of a receiver: after repeated failures it stops sending for a while, then lets a few
//! trial requests through to find out whether the receiver has recovered.
//!
//! CLOSED (sending) -> OPEN after `failure_threshold` consecutive failures -> HALF_OPEN once `timeout_duration` has
//! passed -> CLOSED on the first success, or OPEN again on a failure. The breaker is plain state driven by explicit
//! [`Instant`]s; its owner serialises access to it.

use std::time::{Duration, Instant};

use gomon_runtime::config::KeyError;
use prometheus::IntGauge;
use serde::{Deserialize, Serialize};

/// Configuration of the circuit breaker (`alerting.slack.circuit_breaker`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long the breaker stays open before letting trial requests through.
    #[serde(with = "humantime_serde")]
    pub timeout_duration: Duration,
    /// Most trial requests in flight while half-open.
    pub half_open_max_requests: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            timeout_duration: Duration::from_secs(60),
            half_open_max_requests: 3,
        }
    }
}

impl BreakerConfig {
    /// Checks the values are in range; the error names the key within this section.
    pub fn check(&self) -> Result<(), KeyError> {
        if self.failure_threshold == 0 {
            return Err(KeyError::new("failure_threshold", "must be at least 1"));
        }
        if self.half_open_max_requests == 0 {
            return Err(KeyError::new(
                "half_open_max_requests",
                "must be at least 1",
            ));
        }
        if self.timeout_duration < Duration::from_millis(1) {
            return Err(KeyError::new(
                "timeout_duration",
                format!("must be at least 1ms, not {:?}", self.timeout_duration),
            ));
        }
        Ok(())
    }
}

/// Where the breaker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Requests are refused until the timeout has passed.
    Open,
    /// A few trial requests are let through.
    HalfOpen,
}

impl BreakerState {
    /// Value of the state gauge: 0 closed, 1 open, 2 half-open.
    pub fn as_gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }

    /// The name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "CLOSED",
            BreakerState::Open => "OPEN",
            BreakerState::HalfOpen => "HALF_OPEN",
        }
    }
}

/// Longest wait suggested while half-open trials are all in flight: by then one of them has usually answered.
const HALF_OPEN_POLL: Duration = Duration::from_secs(1);

/// The circuit breaker. Its state is mirrored in a gauge (see [`BreakerState::as_gauge`]).
#[derive(Debug)]
pub struct CircuitBreaker {
    /// The receiver it guards, named in its log lines.
    receiver: String,
    config: BreakerConfig,
    gauge: IntGauge,
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Instant,
    /// When it last left CLOSED: the receiver has failed since then.
    failing_since: Option<Instant>,
    trials: u32,
}

impl CircuitBreaker {
    /// A closed breaker in front of `receiver`; sets `gauge` to 0. Thresholds of 0 are treated as 1.
    pub fn new(receiver: &str, config: BreakerConfig, gauge: IntGauge) -> Self {
        gauge.set(BreakerState::Closed.as_gauge());
        Self {
            receiver: receiver.to_owned(),
            config,
            gauge,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            opened_at: Instant::now(),
            failing_since: None,
            trials: 0,
        }
    }

    /// How long the breaker has been away from CLOSED (open, or half-open with its trials failing) at `now`;
    /// `None` while it is closed.
    pub fn failing_for(&self, now: Instant) -> Option<Duration> {
        self.failing_since
            .map(|since| now.saturating_duration_since(since))
    }

    /// May a request be sent now? `Ok(())` reserves it (in HALF_OPEN it counts as a trial, at most
    /// `half_open_max_requests` in flight); `Err(wait)` means OPEN (or the half-open trials are exhausted): try again
    /// after `wait`.
    ///
    /// An OPEN breaker becomes HALF_OPEN here, once `timeout_duration` has passed since it opened.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Duration> {
        if self.state == BreakerState::Open {
            let elapsed = now.saturating_duration_since(self.opened_at);
            if elapsed < self.config.timeout_duration {
                return Err(self.config.timeout_duration - elapsed);
            }
            self.transition(BreakerState::HalfOpen);
            tracing::info!(
                receiver = %self.receiver,
                from = "OPEN",
                to = "HALF_OPEN",
                max_trials = self.max_trials(),
                "CIRCUIT BREAKER half-open: trying the receiver again"
            );
        }
        match self.state {
            BreakerState::Closed => Ok(()),
            BreakerState::HalfOpen if self.trials < self.max_trials() => {
                self.trials += 1;
                Ok(())
            }
            _ => Err(self.config.timeout_duration.min(HALF_OPEN_POLL)),
        }
    }

    /// Records a request that succeeded (call it for any answer that does not count against the receiver). CLOSED: resets
    /// the consecutive failures; HALF_OPEN: closes the breaker. Ignored while OPEN (a request sent before it opened).
    pub fn on_success(&mut self, _now: Instant) {
        match self.state {
            BreakerState::Closed => self.consecutive_failures = 0,
            BreakerState::HalfOpen => {
                self.transition(BreakerState::Closed);
                self.failing_since = None;
                tracing::info!(
                    receiver = %self.receiver,
                    from = "HALF_OPEN",
                    to = "CLOSED",
                    "CIRCUIT BREAKER closed: notifications resumed"
                );
            }
            BreakerState::Open => {}
        }
    }

    /// Records a request that failed because of the receiver. CLOSED: counts it, and opens the breaker on reaching
    /// `failure_threshold` consecutive failures; HALF_OPEN: opens it again, restarting the timer. Ignored while OPEN.
    pub fn on_failure(&mut self, now: Instant) {
        match self.state {
            BreakerState::Closed => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                let failures = self.consecutive_failures;
                if failures >= self.config.failure_threshold.max(1) {
                    self.opened_at = now;
                    self.failing_since = Some(now);
                    self.transition(BreakerState::Open);
                    tracing::warn!(
                        receiver = %self.receiver,
                        from = "CLOSED",
                        to = "OPEN",
                        consecutive_failures = failures,
                        retry_in = ?self.config.timeout_duration,
                        "CIRCUIT BREAKER opened: notifications paused"
                    );
                }
            }
            BreakerState::HalfOpen => {
                self.opened_at = now;
                self.transition(BreakerState::Open);
                tracing::warn!(
                    receiver = %self.receiver,
                    from = "HALF_OPEN",
                    to = "OPEN",
                    retry_in = ?self.config.timeout_duration,
                    "CIRCUIT BREAKER reopened: the receiver is still failing"
                );
            }
            BreakerState::Open => {}
        }
    }

    /// The current state (an OPEN breaker whose timeout has passed stays OPEN until the next [`Self::try_acquire`]).
    pub fn state(&self) -> BreakerState {
        self.state
    }

    fn max_trials(&self) -> u32 {
        self.config.half_open_max_requests.max(1)
    }

    fn transition(&mut self, to: BreakerState) {
        self.state = to;
        self.consecutive_failures = 0;
        self.trials = 0;
        self.gauge.set(to.as_gauge());
    }
}

#[cfg(test)]
mod tests {
    use gomon_runtime::metrics::must;

    use super::*;

    fn breaker() -> (CircuitBreaker, IntGauge) {
        let gauge = must(IntGauge::new("breaker_state", "test"));
        gauge.set(7);
        let config = BreakerConfig {
            failure_threshold: 3,
            timeout_duration: Duration::from_secs(60),
            half_open_max_requests: 2,
        };
        (CircuitBreaker::new("slack", config, gauge.clone()), gauge)
    }

    fn open(breaker: &mut CircuitBreaker, at: Instant) {
        for _ in 0..3 {
            breaker.on_failure(at);
        }
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn failing_for_counts_from_leaving_closed_through_failed_trials() {
        let (mut breaker, _) = breaker();
        let start = Instant::now();
        assert_eq!(breaker.failing_for(start), None);
        open(&mut breaker, start);
        let later = start + Duration::from_secs(61);
        assert_eq!(breaker.try_acquire(later), Ok(()));
        breaker.on_failure(later);
        assert_eq!(breaker.state(), BreakerState::Open);
        // Reopened by a failed trial: still failing since the first opening.
        assert_eq!(
            breaker.failing_for(later + Duration::from_secs(1)),
            Some(Duration::from_secs(62))
        );
        let again = later + Duration::from_secs(61);
        assert_eq!(breaker.try_acquire(again), Ok(()));
        breaker.on_success(again);
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.failing_for(again), None);
    }

    #[test]
    fn defaults_and_names() {
        let config = BreakerConfig::default();
        assert_eq!(config.failure_threshold, 5);
        assert_eq!(config.timeout_duration, Duration::from_secs(60));
        assert_eq!(config.half_open_max_requests, 3);
        assert!(config.check().is_ok());
        let zero = BreakerConfig {
            failure_threshold: 0,
            ..BreakerConfig::default()
        };
        let error = zero.check().expect_err("zero threshold").within("cb");
        assert_eq!(error.key, "cb.failure_threshold");
        let parsed: BreakerConfig =
            serde_json::from_str(r#"{"timeout_duration": "30s"}"#).expect("parse");
        assert_eq!(parsed.timeout_duration, Duration::from_secs(30));
        assert_eq!(parsed.failure_threshold, 5);
        assert!(serde_json::from_str::<BreakerConfig>(r#"{"threshold": 1}"#).is_err());
        assert_eq!(BreakerState::HalfOpen.as_str(), "HALF_OPEN");
        assert_eq!(BreakerState::Open.as_str(), "OPEN");
        assert_eq!(BreakerState::Closed.as_str(), "CLOSED");
    }

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let (mut breaker, gauge) = breaker();
        assert_eq!(gauge.get(), 0);
        let t0 = Instant::now();
        breaker.on_failure(t0);
        breaker.on_failure(t0);
        breaker.on_success(t0);
        breaker.on_failure(t0);
        breaker.on_failure(t0);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "success resets the count"
        );
        assert_eq!(breaker.try_acquire(t0), Ok(()));
        breaker.on_failure(t0);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(gauge.get(), 1);
    }

    #[test]
    fn open_blocks_with_the_remaining_wait() {
        let (mut breaker, _) = breaker();
        let t0 = Instant::now();
        open(&mut breaker, t0);
        assert_eq!(breaker.try_acquire(t0), Err(Duration::from_secs(60)));
        assert_eq!(
            breaker.try_acquire(t0 + Duration::from_secs(45)),
            Err(Duration::from_secs(15))
        );
        assert_eq!(breaker.state(), BreakerState::Open);
        // Late answers to requests sent before it opened change nothing.
        breaker.on_success(t0 + Duration::from_secs(1));
        breaker.on_failure(t0 + Duration::from_secs(50));
        assert_eq!(
            breaker.try_acquire(t0 + Duration::from_secs(59)),
            Err(Duration::from_secs(1))
        );
    }

    #[test]
    fn half_open_after_timeout_allows_at_most_n_trials() {
        let (mut breaker, gauge) = breaker();
        let t0 = Instant::now();
        open(&mut breaker, t0);
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(breaker.try_acquire(t1), Ok(()));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert_eq!(gauge.get(), 2);
        assert_eq!(breaker.try_acquire(t1), Ok(()));
        let wait = breaker.try_acquire(t1).expect_err("third trial refused");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn half_open_success_closes() {
        let (mut breaker, gauge) = breaker();
        let t0 = Instant::now();
        open(&mut breaker, t0);
        let t1 = t0 + Duration::from_secs(61);
        assert_eq!(breaker.try_acquire(t1), Ok(()));
        breaker.on_success(t1);
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(gauge.get(), 0);
        for _ in 0..5 {
            assert_eq!(breaker.try_acquire(t1), Ok(()));
        }
        // The failure count starts afresh.
        breaker.on_failure(t1);
        breaker.on_failure(t1);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn half_open_failure_reopens_and_restarts_the_timer() {
        let (mut breaker, gauge) = breaker();
        let t0 = Instant::now();
        open(&mut breaker, t0);
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(breaker.try_acquire(t1), Ok(()));
        let t2 = t1 + Duration::from_secs(5);
        breaker.on_failure(t2);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(gauge.get(), 1);
        assert_eq!(breaker.try_acquire(t2), Err(Duration::from_secs(60)));
        assert_eq!(
            breaker.try_acquire(t2 + Duration::from_secs(59)),
            Err(Duration::from_secs(1))
        );
        assert_eq!(breaker.try_acquire(t2 + Duration::from_secs(60)), Ok(()));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn gauge_values() {
        assert_eq!(BreakerState::Closed.as_gauge(), 0);
        assert_eq!(BreakerState::Open.as_gauge(), 1);
        assert_eq!(BreakerState::HalfOpen.as_gauge(), 2);
    }
}
