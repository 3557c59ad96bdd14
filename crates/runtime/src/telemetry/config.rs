//! The `tracing:` section and the standard `OTEL_*` variables it falls back on: what to export, where, sampled
//! how.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry_sdk::trace::Sampler;
use serde::{Deserialize, Serialize};

/// The `tracing` section of the configuration, shared by every role.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// Base URL of the collector's OTLP/HTTP receiver (`http://jaeger:4318`); spans go to `{endpoint}/v1/traces`.
    /// Unset: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL), then `OTEL_EXPORTER_OTLP_ENDPOINT`; neither set
    /// means no spans are exported.
    pub endpoint: Option<String>,
    /// Fraction of new traces recorded, 0 to 1; a trace continued from another service follows that service's
    /// decision. Unset: `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, else 1.
    pub sampling_ratio: Option<f64>,
    /// `service.name` of the spans. Unset: `OTEL_SERVICE_NAME`, else `gomon-<role>`.
    pub service_name: Option<String>,
    /// HTTP headers sent with every export (an API key, say), on top of `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`.
    pub headers: BTreeMap<String, String>,
    /// Finished spans waiting for export at most; more are dropped and counted.
    pub queue_size: usize,
    /// Spans in one export request at most.
    pub max_batch: usize,
    /// Longest a finished span waits before its batch is sent.
    #[serde(with = "humantime_serde")]
    pub export_interval: Duration,
    /// Time limit of one export request. Unset here: `OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT` (milliseconds).
    #[serde(with = "humantime_serde")]
    pub export_timeout: Option<Duration>,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            sampling_ratio: None,
            service_name: None,
            headers: BTreeMap::new(),
            queue_size: 2048,
            max_batch: 512,
            export_interval: Duration::from_secs(1),
            export_timeout: None,
        }
    }
}

/// What the exporter runs with, once the configuration and the `OTEL_*` environment are merged.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Full URL spans are posted to.
    pub traces_url: String,
    /// How new traces are sampled.
    pub sampler: SamplerChoice,
    /// `service.name`.
    pub service_name: String,
    /// Headers of every export request.
    pub headers: BTreeMap<String, String>,
    /// See [`TracingConfig::queue_size`].
    pub queue_size: usize,
    /// See [`TracingConfig::max_batch`].
    pub max_batch: usize,
    /// See [`TracingConfig::export_interval`].
    pub export_interval: Duration,
    /// Time limit of one export request.
    pub export_timeout: Duration,
}

/// The sampler, as `OTEL_TRACES_SAMPLER` names them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplerChoice {
    /// Every trace.
    AlwaysOn,
    /// No trace.
    AlwaysOff,
    /// A fraction of traces, whatever the parent decided.
    Ratio(f64),
    /// The parent's decision; for a new trace, this fraction.
    ParentBasedRatio(f64),
    /// The parent's decision; a new trace is never sampled.
    ParentBasedOff,
}

impl SamplerChoice {
    pub(super) fn sampler(self) -> Sampler {
        match self {
            SamplerChoice::AlwaysOn => Sampler::AlwaysOn,
            SamplerChoice::AlwaysOff => Sampler::AlwaysOff,
            SamplerChoice::Ratio(ratio) => Sampler::TraceIdRatioBased(ratio),
            SamplerChoice::ParentBasedRatio(ratio) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
            }
            SamplerChoice::ParentBasedOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        }
    }
}

impl TracingConfig {
    /// Merges the configuration with the `OTEL_*` variables `env` returns (the configuration wins). `None` when
    /// no endpoint is set or `OTEL_SDK_DISABLED=true`; an error names the key or variable at fault.
    pub fn settings(
        &self,
        default_service: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, String> {
        let env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        if env("OTEL_SDK_DISABLED").is_some_and(|value| value.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let traces_url = match &self.endpoint {
            Some(endpoint) => traces_url(endpoint),
            None => match env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
                Some(url) => url,
                None => match env("OTEL_EXPORTER_OTLP_ENDPOINT") {
                    Some(endpoint) => traces_url(&endpoint),
                    None => return Ok(None),
                },
            },
        };
        let url = reqwest::Url::parse(&traces_url)
            .map_err(|error| format!("tracing.endpoint: {traces_url:?} is not a URL: {error}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "tracing.endpoint: {traces_url:?} must be an http:// or https:// URL"
            ));
        }
        for variable in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(protocol) = env(variable) {
                if protocol.trim() != "http/protobuf" {
                    return Err(format!(
                        "{variable}={protocol:?}: GoMon exports over OTLP/HTTP only; set http/protobuf and point \
                         the endpoint at the collector's OTLP/HTTP port (4318 on Jaeger)"
                    ));
                }
                break;
            }
        }
        let sampler = match self.sampling_ratio {
            Some(ratio) if (0.0..=1.0).contains(&ratio) => SamplerChoice::ParentBasedRatio(ratio),
            Some(ratio) => {
                return Err(format!(
                    "tracing.sampling_ratio: {ratio} is not between 0 and 1"
                ));
            }
            None => sampler_from_env(env("OTEL_TRACES_SAMPLER"), env("OTEL_TRACES_SAMPLER_ARG"))?,
        };
        let service_name = self
            .service_name
            .clone()
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| default_service.to_owned());
        let mut headers = BTreeMap::new();
        for variable in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            if let Some(list) = env(variable) {
                headers
                    .extend(parse_headers(&list).map_err(|error| format!("{variable}: {error}"))?);
            }
        }
        headers.extend(self.headers.clone());
        for (name, value) in &headers {
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("tracing.headers: {name:?} is not a header name"))?;
            reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                format!("tracing.headers: the value of {name:?} is not a header value")
            })?;
        }
        let export_timeout = match self.export_timeout {
            Some(timeout) => timeout,
            None => {
                let variable = [
                    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                    "OTEL_EXPORTER_OTLP_TIMEOUT",
                ]
                .into_iter()
                .find_map(|name| env(name).map(|value| (name, value)));
                match variable {
                    Some((name, value)) => value
                        .trim()
                        .parse::<u64>()
                        .map(Duration::from_millis)
                        .map_err(|_| {
                        format!("{name}={value:?}: not a number of milliseconds")
                    })?,
                    None => Duration::from_secs(10),
                }
            }
        };
        if self.queue_size == 0 || self.max_batch == 0 {
            return Err("tracing.queue_size and tracing.max_batch must be at least 1".to_owned());
        }
        if self.export_interval.is_zero() || export_timeout.is_zero() {
            return Err(
                "tracing.export_interval and tracing.export_timeout must be above zero".to_owned(),
            );
        }
        Ok(Some(Settings {
            traces_url,
            sampler,
            service_name,
            headers,
            queue_size: self.queue_size,
            max_batch: self.max_batch.min(self.queue_size),
            export_interval: self.export_interval,
            export_timeout,
        }))
    }
}

/// `{endpoint}/v1/traces`, as the OTLP specification derives the signal URL from the base endpoint.
fn traces_url(endpoint: &str) -> String {
    format!("{}/v1/traces", endpoint.trim().trim_end_matches('/'))
}

/// The sampler `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` name (the specification's default:
/// `parentbased_always_on`).
fn sampler_from_env(
    name: Option<String>,
    argument: Option<String>,
) -> Result<SamplerChoice, String> {
    let ratio = || -> Result<f64, String> {
        match &argument {
            None => Ok(1.0),
            Some(value) => value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|ratio| (0.0..=1.0).contains(ratio))
                .ok_or_else(|| {
                    format!("OTEL_TRACES_SAMPLER_ARG={value:?}: not a ratio between 0 and 1")
                }),
        }
    };
    let name = name.map(|name| name.trim().to_ascii_lowercase());
    Ok(match name.as_deref() {
        None | Some("parentbased_always_on") => SamplerChoice::ParentBasedRatio(1.0),
        Some("always_on") => SamplerChoice::AlwaysOn,
        Some("always_off") => SamplerChoice::AlwaysOff,
        Some("traceidratio") => SamplerChoice::Ratio(ratio()?),
        Some("parentbased_traceidratio") => SamplerChoice::ParentBasedRatio(ratio()?),
        Some("parentbased_always_off") => SamplerChoice::ParentBasedOff,
        Some(other) => {
            return Err(format!(
                "OTEL_TRACES_SAMPLER={other:?}: not one of always_on, always_off, traceidratio, \
                 parentbased_always_on, parentbased_always_off, parentbased_traceidratio"
            ));
        }
    })
}

/// `key1=value1,key2=value2`, values percent-decoded (the `OTEL_EXPORTER_OTLP_HEADERS` format).
fn parse_headers(list: &str) -> Result<Vec<(String, String)>, String> {
    list.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not name=value"))?;
            let value = percent_decode(value.trim()).ok_or_else(|| {
                format!(
                    "the value of {:?} is not valid percent-encoding",
                    name.trim()
                )
            })?;
            Ok((name.trim().to_owned(), value))
        })
        .collect()
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(config: &TracingConfig, vars: &[(&str, &str)]) -> Result<Option<Settings>, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        config.settings("gomon-agent", |name| vars.get(name).cloned())
    }

    #[test]
    fn off_without_an_endpoint_or_when_disabled() {
        assert_eq!(settings(&TracingConfig::default(), &[]), Ok(None));
        let config = TracingConfig {
            endpoint: Some("http://jaeger:4318".into()),
            ..TracingConfig::default()
        };
        assert_eq!(
            settings(&config, &[("OTEL_SDK_DISABLED", "true")]),
            Ok(None)
        );
    }

    #[test]
    fn the_standard_variables_apply_when_the_configuration_is_silent() {
        let on = settings(
            &TracingConfig::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318/"),
                ("OTEL_SERVICE_NAME", "edge-agent"),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b,x-tenant=ops"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ],
        )
        .expect("valid")
        .expect("on");
        assert_eq!(on.traces_url, "http://jaeger:4318/v1/traces");
        assert_eq!(on.service_name, "edge-agent");
        assert_eq!(on.sampler, SamplerChoice::ParentBasedRatio(0.25));
        assert_eq!(on.headers.get("api-key").map(String::as_str), Some("a b"));
        assert_eq!(on.export_timeout, Duration::from_millis(2500));
        let full = settings(
            &TracingConfig::default(),
            &[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://otel.example/custom",
            )],
        )
        .expect("valid")
        .expect("on");
        assert_eq!(full.traces_url, "https://otel.example/custom");
        assert_eq!(full.service_name, "gomon-agent");
        assert_eq!(full.sampler, SamplerChoice::ParentBasedRatio(1.0));
    }

    #[test]
    fn the_configuration_wins_over_the_variables() {
        let config = TracingConfig {
            endpoint: Some("http://collector:4318".into()),
            sampling_ratio: Some(0.1),
            service_name: Some("agent-eu".into()),
            ..TracingConfig::default()
        };
        let on = settings(
            &config,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318"),
                ("OTEL_SERVICE_NAME", "other"),
                ("OTEL_TRACES_SAMPLER", "always_off"),
            ],
        )
        .expect("valid")
        .expect("on");
        assert_eq!(on.traces_url, "http://collector:4318/v1/traces");
        assert_eq!(on.service_name, "agent-eu");
        assert_eq!(on.sampler, SamplerChoice::ParentBasedRatio(0.1));
    }

    #[test]
    fn bad_values_are_errors_naming_the_key() {
        let endpoint = |url: &str| TracingConfig {
            endpoint: Some(url.into()),
            ..TracingConfig::default()
        };
        let error = settings(&endpoint("jaeger:4317"), &[]).expect_err("no scheme");
        assert!(error.contains("tracing.endpoint"), "{error}");
        let error = settings(
            &endpoint("http://jaeger:4318"),
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
        )
        .expect_err("grpc");
        assert!(
            error.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && error.contains("4318"),
            "{error}"
        );
        let ratio = TracingConfig {
            sampling_ratio: Some(1.5),
            ..endpoint("http://jaeger:4318")
        };
        let error = settings(&ratio, &[]).expect_err("ratio");
        assert!(error.contains("tracing.sampling_ratio"), "{error}");
        let error = settings(
            &endpoint("http://jaeger:4318"),
            &[("OTEL_TRACES_SAMPLER", "sometimes")],
        )
        .expect_err("sampler");
        assert!(error.contains("OTEL_TRACES_SAMPLER"), "{error}");
        let error = settings(
            &endpoint("http://jaeger:4318"),
            &[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")],
        )
        .expect_err("headers");
        assert!(error.contains("OTEL_EXPORTER_OTLP_HEADERS"), "{error}");
    }
}
