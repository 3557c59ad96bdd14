//! From an agent's batch to Prometheus time series: names and labels checked, `host` from the batch, external labels
//! added, labels sorted, the collection time as every sample's timestamp.

use gomon_proto::MetricBatch;
use gomon_proto::prometheus::{Label, Sample, TimeSeries};

/// Why a message is set aside instead of written (the `reason` label of `aggregator_messages_invalid_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Not a protobuf `MetricBatch`.
    #[error("not a protobuf MetricBatch")]
    Decode,
    /// The batch names no host.
    #[error("the batch names no host")]
    NoHost,
    /// The batch carries no collection time.
    #[error("the batch carries no collection time")]
    NoTimestamp,
    /// A metric or label name Prometheus does not accept.
    #[error("a metric or label name is not valid")]
    InvalidName,
}

impl Invalid {
    /// The metric label value.
    pub fn reason(self) -> &'static str {
        match self {
            Invalid::Decode => "decode",
            Invalid::NoHost => "no_host",
            Invalid::NoTimestamp => "no_timestamp",
            Invalid::InvalidName => "invalid_name",
        }
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Decodes a Kafka message's value into a batch.
pub fn decode(payload: &[u8]) -> Result<MetricBatch, Invalid> {
    gomon_proto::decode_batch(payload).map_err(|_| Invalid::Decode)
}

/// The series of `batch`, one sample each, appended to `out`.
///
/// Labels: the sample's own, `host` from the batch (it wins over a sample's `host`: the batch says where the sample
/// was collected), then `external` for names the series does not have; sorted by name as remote write requires.
/// The whole batch is refused when one name is invalid, so a batch is written entirely or not at all.
pub fn append_series(
    batch: MetricBatch,
    external: &[(String, String)],
    out: &mut Vec<TimeSeries>,
) -> Result<(), Invalid> {
    if batch.host.is_empty() {
        return Err(Invalid::NoHost);
    }
    if batch.timestamp_ms <= 0 {
        return Err(Invalid::NoTimestamp);
    }
    let start = out.len();
    out.reserve(batch.samples.len());
    for sample in batch.samples {
        if !valid_metric_name(&sample.name) {
            out.truncate(start);
            return Err(Invalid::InvalidName);
        }
        let mut labels = Vec::with_capacity(sample.labels.len() + 2 + external.len());
        labels.push(Label {
            name: "__name__".to_owned(),
            value: sample.name,
        });
        labels.push(Label {
            name: "host".to_owned(),
            value: batch.host.clone(),
        });
        for label in sample.labels {
            if label.name == "host" {
                continue;
            }
            if !valid_label_name(&label.name) || label.name == "__name__" {
                out.truncate(start);
                return Err(Invalid::InvalidName);
            }
            labels.push(Label {
                name: label.name,
                value: label.value,
            });
        }
        for (name, value) in external {
            if !labels.iter().any(|label| &label.name == name) {
                labels.push(Label {
                    name: name.clone(),
                    value: value.clone(),
                });
            }
        }
        labels.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        out.push(TimeSeries {
            labels,
            samples: vec![Sample {
                value: sample.value,
                timestamp: batch.timestamp_ms,
            }],
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gomon_proto::metrics::v1::{Label as WireLabel, Sample as WireSample};

    fn batch(samples: Vec<WireSample>) -> MetricBatch {
        MetricBatch {
            host: "node-7".to_owned(),
            timestamp_ms: 1_700_000_000_123,
            samples,
            ..MetricBatch::default()
        }
    }

    fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> WireSample {
        WireSample {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(name, value)| WireLabel {
                    name: (*name).to_owned(),
                    value: (*value).to_owned(),
                })
                .collect(),
            value,
            kind: 2,
        }
    }

    fn pairs(series: &TimeSeries) -> Vec<(&str, &str)> {
        series
            .labels
            .iter()
            .map(|label| (label.name.as_str(), label.value.as_str()))
            .collect()
    }

    #[test]
    fn host_comes_from_the_batch_and_external_labels_fill_in() {
        let external = vec![
            ("cluster".to_owned(), "prod-eu".to_owned()),
            ("mode".to_owned(), "external-loses".to_owned()),
        ];
        let mut out = Vec::new();
        append_series(
            batch(vec![sample(
                "node_cpu_seconds_total",
                &[("mode", "idle"), ("host", "aggregator-pod"), ("cpu", "0")],
                12.5,
            )]),
            &external,
            &mut out,
        )
        .expect("valid");
        assert_eq!(out.len(), 1);
        assert_eq!(
            pairs(&out[0]),
            vec![
                ("__name__", "node_cpu_seconds_total"),
                ("cluster", "prod-eu"),
                ("cpu", "0"),
                ("host", "node-7"),
                ("mode", "idle"),
            ]
        );
        assert_eq!(out[0].samples.len(), 1);
        assert_eq!(out[0].samples[0].value, 12.5);
        assert_eq!(out[0].samples[0].timestamp, 1_700_000_000_123);
    }

    #[test]
    fn a_batch_with_one_bad_name_is_refused_whole() {
        let mut out = Vec::new();
        append_series(batch(vec![sample("ok_metric", &[], 1.0)]), &[], &mut out).expect("valid");
        let bad = batch(vec![sample("fine", &[], 1.0), sample("bad name", &[], 2.0)]);
        assert_eq!(append_series(bad, &[], &mut out), Err(Invalid::InvalidName));
        let bad_label = batch(vec![sample("fine", &[("0day", "x")], 1.0)]);
        assert_eq!(
            append_series(bad_label, &[], &mut out),
            Err(Invalid::InvalidName)
        );
        assert_eq!(out.len(), 1, "nothing of a refused batch stays");
        let mut no_host = batch(vec![]);
        no_host.host.clear();
        assert_eq!(append_series(no_host, &[], &mut out), Err(Invalid::NoHost));
        let mut no_time = batch(vec![]);
        no_time.timestamp_ms = 0;
        assert_eq!(
            append_series(no_time, &[], &mut out),
            Err(Invalid::NoTimestamp)
        );
        assert_eq!(decode(b"\xff\xff\xff garbage"), Err(Invalid::Decode));
    }

    #[test]
    fn names_follow_prometheus_rules() {
        for good in ["a", "node_cpu_seconds_total", ":recorded:rule", "_x9"] {
            assert!(valid_metric_name(good), "{good}");
        }
        for bad in ["", "9a", "a-b", "a b", "é"] {
            assert!(!valid_metric_name(bad), "{bad}");
        }
        assert!(valid_label_name("mountpoint"));
        assert!(!valid_label_name("a:b"));
        assert!(!valid_label_name(""));
    }
}
