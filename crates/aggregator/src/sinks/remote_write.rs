//! The Prometheus remote write 1.0 sink: a snappy-compressed protobuf `WriteRequest` per request, retried with
//! exponential backoff and jitter while the receiver is down, overloaded or refuses our credentials or URL.

use std::time::Duration;

use gomon_proto::prometheus::{TimeSeries, WriteRequest};
use gomon_proto::prost::Message as _;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderValue};

use crate::config::RemoteWriteConfig;
use gomon_runtime::config::KeyError;
use gomon_runtime::http_client::Credentials;

/// How a request ended.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteError {
    /// Worth retrying: a network error, a 5xx, 429 or 408; `retry_after` is the receiver's `Retry-After`, if any.
    Retryable {
        /// What went wrong.
        message: String,
        /// How long the receiver asked us to wait.
        retry_after: Option<Duration>,
    },
    /// The receiver refused our credentials or URL (401, 403, 404, 405, 407): a configuration fault, not bad data;
    /// worth retrying until someone fixes it.
    Blocked {
        /// Why.
        reason: Blocked,
        /// The status and the receiver's answer.
        message: String,
    },
    /// The receiver refused the data (400, 422 and any other 4xx): sending it again cannot help.
    Permanent {
        /// The status and the receiver's answer.
        message: String,
    },
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Retryable { message, .. }
            | WriteError::Blocked { message, .. }
            | WriteError::Permanent { message } => f.write_str(message),
        }
    }
}

/// Why the receiver refuses every request, whatever its data: the `reason` of `aggregator_remote_write_blocked`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// 401: missing or wrong credentials (a rotated token).
    Unauthorized,
    /// 403: credentials without the right to write.
    Forbidden,
    /// 404: wrong URL.
    NotFound,
    /// 405: a URL that does not take writes.
    MethodNotAllowed,
    /// 407: a proxy in between wants credentials.
    ProxyAuthenticationRequired,
}

impl Blocked {
    /// Every reason, in status order.
    pub const ALL: [Blocked; 5] = [
        Blocked::Unauthorized,
        Blocked::Forbidden,
        Blocked::NotFound,
        Blocked::MethodNotAllowed,
        Blocked::ProxyAuthenticationRequired,
    ];

    /// The reason for `status`, if it is one that blocks.
    fn from_status(status: StatusCode) -> Option<Blocked> {
        match status {
            StatusCode::UNAUTHORIZED => Some(Blocked::Unauthorized),
            StatusCode::FORBIDDEN => Some(Blocked::Forbidden),
            StatusCode::NOT_FOUND => Some(Blocked::NotFound),
            StatusCode::METHOD_NOT_ALLOWED => Some(Blocked::MethodNotAllowed),
            StatusCode::PROXY_AUTHENTICATION_REQUIRED => Some(Blocked::ProxyAuthenticationRequired),
            _ => None,
        }
    }

    /// Its label value: `unauthorized`, `forbidden`, `not_found`, `method_not_allowed`,
    /// `proxy_authentication_required`.
    pub fn reason(self) -> &'static str {
        match self {
            Blocked::Unauthorized => "unauthorized",
            Blocked::Forbidden => "forbidden",
            Blocked::NotFound => "not_found",
            Blocked::MethodNotAllowed => "method_not_allowed",
            Blocked::ProxyAuthenticationRequired => "proxy_authentication_required",
        }
    }
}

/// How a failed request ends, from its status: retried (5xx, 429, 408), blocked (401, 403, 404, 405, 407) or dropped
/// (any other status).
fn classify(status: StatusCode, message: String, retry_after: Option<Duration>) -> WriteError {
    if gomon_runtime::backoff::retryable(status) {
        WriteError::Retryable {
            message,
            retry_after,
        }
    } else if let Some(reason) = Blocked::from_status(status) {
        WriteError::Blocked { reason, message }
    } else {
        WriteError::Permanent { message }
    }
}

/// Encodes series as a remote write body: protobuf `WriteRequest`, snappy block format.
pub fn encode(timeseries: Vec<TimeSeries>) -> Vec<u8> {
    let request = WriteRequest {
        timeseries,
        metadata: Vec::new(),
    };
    let protobuf = request.encode_to_vec();
    // Compressing a byte slice in memory cannot fail but for a length beyond snappy's 4 GiB limit, which one
    // bounded request never reaches; an empty body would then be refused by the receiver and counted.
    snap::raw::Encoder::new()
        .compress_vec(&protobuf)
        .unwrap_or_default()
}

/// A client of one remote write receiver.
#[derive(Clone, Debug)]
pub struct RemoteWriter {
    client: reqwest::Client,
    url: reqwest::Url,
    credentials: Option<Credentials>,
    min_backoff: Duration,
    max_backoff: Duration,
}

impl RemoteWriter {
    /// A client for `config`; files (CA, client certificate, secrets) are read here.
    pub fn new(config: &RemoteWriteConfig) -> Result<Self, KeyError> {
        let resolved = config.resolve()?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(gomon_proto::CONTENT_TYPE),
        );
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        headers.insert(
            "X-Prometheus-Remote-Write-Version",
            HeaderValue::from_static("0.1.0"),
        );
        let builder = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.timeout)
            .user_agent(concat!("gomon-aggregator/", env!("CARGO_PKG_VERSION")));
        let builder = resolved.tls.apply(builder);
        let client = builder
            .build()
            .map_err(|error| KeyError::new("aggregator.remote_write.tls", error.to_string()))?;
        Ok(Self {
            client,
            url: resolved.url,
            credentials: resolved.credentials,
            min_backoff: config.min_backoff,
            max_backoff: config.max_backoff,
        })
    }

    /// The receiver's URL.
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// Sends one encoded body once.
    pub async fn send(&self, body: bytes::Bytes) -> Result<(), WriteError> {
        let mut request = self.client.post(self.url.clone()).body(body);
        if let Some(credentials) = &self.credentials {
            request = credentials.apply(request);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                return Err(WriteError::Retryable {
                    message: format!("request failed: {}", error_chain(&error)),
                    retry_after: None,
                });
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = gomon_runtime::backoff::retry_after(response.headers());
        let answer = response.text().await.unwrap_or_default();
        let answer = gomon_runtime::text::truncate(answer.trim(), 512);
        Err(classify(status, format!("{status}: {answer}"), retry_after))
    }

    /// How long to wait before retry number `attempt` (1, 2, ...): doubling from `min_backoff`, at most
    /// `max_backoff`, with jitter over its upper half so that many writers do not retry in step; a receiver's
    /// `Retry-After` is honoured up to `max_backoff`.
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        gomon_runtime::backoff::delay(self.min_backoff, self.max_backoff, attempt, retry_after)
    }
}

/// An error and its causes, joined: reqwest hides the interesting part (connection refused) in the sources.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use gomon_proto::prometheus::{Label, Sample};

    #[test]
    fn body_is_snappy_protobuf() {
        let series = vec![TimeSeries {
            labels: vec![Label {
                name: "__name__".into(),
                value: "up".into(),
            }],
            samples: vec![Sample {
                value: 1.0,
                timestamp: 42,
            }],
        }];
        let body = encode(series.clone());
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&body)
            .expect("snappy");
        let decoded = WriteRequest::decode(raw.as_slice()).expect("protobuf");
        assert_eq!(decoded.timeseries, series);
    }

    #[test]
    fn configuration_faults_block_bad_data_is_dropped_outages_are_retried() {
        let class = |code: u16| {
            let status = StatusCode::from_u16(code).expect("status");
            match classify(status, String::new(), None) {
                WriteError::Retryable { .. } => "retry".to_owned(),
                WriteError::Blocked { reason, .. } => reason.reason().to_owned(),
                WriteError::Permanent { .. } => "drop".to_owned(),
            }
        };
        for (code, want) in [
            (401, "unauthorized"),
            (403, "forbidden"),
            (404, "not_found"),
            (405, "method_not_allowed"),
            (407, "proxy_authentication_required"),
            (400, "drop"),
            (413, "drop"),
            (422, "drop"),
            (408, "retry"),
            (429, "retry"),
            (500, "retry"),
            (503, "retry"),
        ] {
            assert_eq!(class(code), want, "{code}");
        }
    }
}
