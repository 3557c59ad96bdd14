//! What one attempt to send a notification came to, whatever the receiver: accepted, try again later, or give up
//! ([`SendOutcome`]); and the HTTP answers' classification every receiver shares: status codes, `Retry-After`,
//! connection errors and timeouts, answers read only up to a bound, secrets removed from reasons.

use std::time::Duration;

/// Longest `Retry-After` honoured; longer values are capped to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Most bytes of an answer read: the start of an error body for the reason, or a Web API answer. A receiver that
/// sends more is not read further; one that never ends is cut by the request's timeout.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Longest part of a response body kept in a reason.
const MAX_REASON_BODY: usize = 300;

/// What became of one attempt to send a notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// The receiver took it. `ts` and `channel` come from Slack's `chat.postMessage` answer (`None` otherwise).
    Accepted {
        /// Timestamp that identifies the message (the `thread_ts` of replies to it).
        ts: Option<String>,
        /// Id of the channel it was posted in.
        channel: Option<String>,
    },
    /// The receiver's fault (5xx, 429, 408, timeout, connection error, a transient Slack error): try again later.
    Transient {
        /// What went wrong, without secrets.
        reason: String,
        /// How long the receiver asked us to wait (`Retry-After`), if it did.
        retry_after: Option<Duration>,
    },
    /// Our request or configuration is wrong (another 4xx, 3xx as redirects are not followed, a Slack error such
    /// as `channel_not_found`): retrying will not help.
    Permanent {
        /// The HTTP status and body, or the Web API error code.
        reason: String,
    },
}

impl SendOutcome {
    /// Whether this outcome says the receiver is failing (feeds its circuit breaker): true only for
    /// [`SendOutcome::Transient`].
    pub fn counts_against_receiver(&self) -> bool {
        matches!(self, SendOutcome::Transient { .. })
    }
}

/// `Retry-After` in seconds, capped at [`MAX_RETRY_AFTER`].
pub(crate) fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    gomon_runtime::backoff::retry_after(response.headers()).map(|wait| wait.min(MAX_RETRY_AFTER))
}

/// The body of `response`, at most `limit` bytes of it; the rest is not read.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Ok(body)
}

/// The start of a response body, on one line; empty when it cannot be read.
pub(crate) async fn body_text(response: reqwest::Response) -> String {
    let bytes = read_limited(response, MAX_ANSWER_BYTES)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::model::truncate(&line, MAX_REASON_BODY)
}

/// Sends `request` (a POST, with its body and credentials) and says what came of it: any 2xx accepted (its body
/// not read); a network error or a timeout (`timeout`) transient; any other status as [`classify_status`] says, with
/// the start of the answer as the reason.
pub(crate) async fn post(request: reqwest::RequestBuilder, timeout: Duration) -> SendOutcome {
    match request.send().await {
        Err(error) => request_failed(error, timeout),
        Ok(response) if response.status().is_success() => SendOutcome::Accepted {
            ts: None,
            channel: None,
        },
        Ok(response) => {
            let status = response.status();
            let retry_after = retry_after(&response);
            let body = body_text(response).await;
            classify_status(status, &body, retry_after)
        }
    }
}

/// The outcome of a non-2xx answer: transient when retrying may help (see
/// [`gomon_runtime::backoff::retryable`]), else permanent.
pub(crate) fn classify_status(
    status: reqwest::StatusCode,
    body: &str,
    retry_after: Option<Duration>,
) -> SendOutcome {
    let reason = if body.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {} {body}", status.as_u16())
    };
    if gomon_runtime::backoff::retryable(status) {
        SendOutcome::Transient {
            reason,
            retry_after,
        }
    } else {
        SendOutcome::Permanent { reason }
    }
}

/// The outcome of a request that got no (complete) answer within `timeout`; the URL is left out of the reason.
pub(crate) fn request_failed(error: reqwest::Error, timeout: Duration) -> SendOutcome {
    let reason = if error.is_timeout() {
        format!("timed out after {timeout:?}")
    } else {
        let error = error.without_url();
        let mut reason = if error.is_connect() {
            "connection failed".to_owned()
        } else {
            "request failed".to_owned()
        };
        let mut source: Option<&dyn std::error::Error> = Some(&error);
        while let Some(current) = source {
            reason.push_str(": ");
            reason.push_str(&current.to_string());
            source = current.source();
        }
        reason
    };
    SendOutcome::Transient {
        reason,
        retry_after: None,
    }
}

/// `outcome` with every one of `secrets` replaced by `<redacted>` in its reason (an answer could echo one).
pub(crate) fn redact(outcome: SendOutcome, secrets: &[String]) -> SendOutcome {
    let clean = |mut reason: String| {
        for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
            reason = reason.replace(secret.as_str(), "<redacted>");
        }
        reason
    };
    match outcome {
        SendOutcome::Transient {
            reason,
            retry_after,
        } => SendOutcome::Transient {
            reason: clean(reason),
            retry_after,
        },
        SendOutcome::Permanent { reason } => SendOutcome::Permanent {
            reason: clean(reason),
        },
        accepted => accepted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_outcomes_count_against_the_receiver() {
        let transient = SendOutcome::Transient {
            reason: "HTTP 500".into(),
            retry_after: None,
        };
        assert!(transient.counts_against_receiver());
        assert!(!SendOutcome::Permanent { reason: "x".into() }.counts_against_receiver());
        let accepted = SendOutcome::Accepted {
            ts: None,
            channel: None,
        };
        assert!(!accepted.counts_against_receiver());
    }

    #[test]
    fn statuses_are_classified_and_secrets_redacted() {
        for (status, transient) in [
            (500, true),
            (503, true),
            (429, true),
            (408, true),
            (400, false),
            (404, false),
            (301, false),
        ] {
            let status = reqwest::StatusCode::from_u16(status).expect("status");
            let outcome = classify_status(status, "", None);
            assert_eq!(outcome.counts_against_receiver(), transient, "{status}");
        }
        let outcome = classify_status(reqwest::StatusCode::FORBIDDEN, "bad token hunter2", None);
        let SendOutcome::Permanent { reason } = redact(outcome, &["hunter2".to_owned()]) else {
            panic!("permanent");
        };
        assert_eq!(reason, "HTTP 403 bad token <redacted>");
    }
}
