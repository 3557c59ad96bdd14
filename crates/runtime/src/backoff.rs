//! The one retry schedule of GoMon: exponential backoff with jitter between `min_backoff` and `max_backoff`,
//! honouring a server's `Retry-After` up to `max_backoff`; and which HTTP answers are worth retrying.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};

/// Whether an HTTP answer with `status` is worth sending again later: a 5xx, 429 (too many requests) or 408
/// (request timeout). Any other 4xx will be the same next time.
pub fn retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// The `Retry-After` of an answer, when it gives seconds (the HTTP-date form is ignored).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The wait before retry number `attempt` (1, 2, ...): `min` doubled for each earlier retry, at most `max`, then
/// jittered over its upper half (so that many clients do not retry in step). A server's `retry_after` is honoured up
/// to `max` (never less than the jittered wait).
pub fn delay(
    min: Duration,
    max: Duration,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let doubled = min.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20)));
    let jittered = doubled.min(max).mul_f64(rand::random_range(0.5..=1.0));
    match retry_after {
        Some(asked) => asked.min(max).max(jittered),
        None => jittered,
    }
}

/// A retry schedule that counts its own attempts: [`Backoff::next_wait`] after each failure, [`Backoff::reset`] after a
/// success.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A schedule starting at `min`, doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The wait before the next retry (see [`delay`]).
    pub fn next_wait(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        delay(self.min, self.max, self.attempt, None)
    }

    /// Starts again from `min` (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Retries since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_within_bounds_with_jitter_and_honours_retry_after() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(2));
        for attempt in 1..30 {
            let ceiling = (min * 2u32.pow((attempt - 1).min(10))).min(max);
            let wait = delay(min, max, attempt, None);
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "{attempt}: {wait:?}"
            );
        }
        assert!(delay(min, max, 1, Some(Duration::from_secs(1))) >= Duration::from_secs(1));
        assert_eq!(delay(min, max, 1, Some(Duration::from_secs(600))), max);
        assert!(delay(min, max, u32::MAX, None) <= max);
    }

    #[test]
    fn server_errors_429_and_408_are_retryable_other_answers_not() {
        for code in [500, 502, 503, 504, 429, 408] {
            assert!(
                retryable(StatusCode::from_u16(code).expect("status")),
                "{code}"
            );
        }
        for code in [200, 400, 401, 403, 404, 413, 422] {
            assert!(
                !retryable(StatusCode::from_u16(code).expect("status")),
                "{code}"
            );
        }
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(header::RETRY_AFTER, " 7 ".parse().expect("value"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("value"),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn a_schedule_counts_its_attempts_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let waits: Vec<Duration> = (0..5).map(|_| backoff.next_wait()).collect();
        for (wait, ceiling) in waits.iter().zip([1, 2, 4, 8, 8]) {
            let ceiling = Duration::from_secs(ceiling);
            assert!(*wait >= ceiling / 2 && *wait <= ceiling, "{waits:?}");
        }
        assert_eq!(backoff.attempts(), 5);
        backoff.reset();
        assert!(backoff.next_wait() <= Duration::from_secs(1));
    }
}
