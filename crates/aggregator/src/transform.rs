//! From an agent's batch to Prometheus time series: names and labels checked, `host` from the batch, external labels,
//! `job` and `instance` added, labels sorted, the collection time as every sample's timestamp.

use gomon_proto::MetricBatch;
use gomon_proto::prometheus::{Label, Sample, TimeSeries};

use gomon_runtime::selector::{valid_label_name, valid_metric_name};

use crate::config::{AggregatorConfig, INSTANCE_HOST, LimitsConfig};

/// What the aggregator adds to every series besides `host`: `aggregator.external_labels`, then `job` and
/// `instance` (`aggregator.job`, `aggregator.instance`), each only where the series does not carry the name yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddedLabels {
    /// `aggregator.external_labels`.
    pub external: Vec<(String, String)>,
    /// The value of `job`; `None`: no `job` label.
    pub job: Option<String>,
    /// The `instance` template, `{host}` standing for the batch's host; `None`: no `instance` label.
    pub instance: Option<String>,
}

impl AddedLabels {
    /// The labels `config` asks for; an empty `job` or `instance` adds none.
    pub fn from_config(config: &AggregatorConfig) -> Self {
        let set = |value: &str| (!value.is_empty()).then(|| value.to_owned());
        Self {
            external: config
                .external_labels
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            job: set(&config.job),
            instance: set(&config.instance),
        }
    }

    /// The `instance` of `host`'s series.
    fn instance(&self, host: &str) -> Option<String> {
        self.instance
            .as_ref()
            .map(|template| template.replace(INSTANCE_HOST, host))
    }
}

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
    /// The message is larger than `limits.max_message_bytes`.
    #[error("the message is larger than limits.max_message_bytes")]
    TooLarge,
    /// `host` is longer than `limits.max_host_bytes`.
    #[error("host is longer than limits.max_host_bytes")]
    HostTooLong,
    /// More samples than `limits.max_samples_per_batch`.
    #[error("more samples than limits.max_samples_per_batch")]
    TooManySamples,
    /// A sample with more labels than `limits.max_labels_per_sample`.
    #[error("a sample has more labels than limits.max_labels_per_sample")]
    TooManyLabels,
    /// A label name, label value or metric name over `limits.max_label_name_bytes` / `max_label_value_bytes`.
    #[error("a label name, label value or metric name is longer than its limit")]
    LabelTooLong,
    /// The collection time is further in the future than `limits.max_future`.
    #[error("the collection time is further in the future than limits.max_future")]
    FutureTimestamp,
}

impl Invalid {
    /// Every reason, for the metric's label values.
    pub const ALL: [Invalid; 10] = [
        Invalid::Decode,
        Invalid::NoHost,
        Invalid::NoTimestamp,
        Invalid::InvalidName,
        Invalid::TooLarge,
        Invalid::HostTooLong,
        Invalid::TooManySamples,
        Invalid::TooManyLabels,
        Invalid::LabelTooLong,
        Invalid::FutureTimestamp,
    ];

    /// The metric label value.
    pub fn reason(self) -> &'static str {
        match self {
            Invalid::Decode => "decode",
            Invalid::NoHost => "no_host",
            Invalid::NoTimestamp => "no_timestamp",
            Invalid::InvalidName => "invalid_name",
            Invalid::TooLarge => "too_large",
            Invalid::HostTooLong => "host_too_long",
            Invalid::TooManySamples => "too_many_samples",
            Invalid::TooManyLabels => "too_many_labels",
            Invalid::LabelTooLong => "label_too_long",
            Invalid::FutureTimestamp => "future_timestamp",
        }
    }
}

/// Decodes a Kafka message's value into a batch.
pub fn decode(payload: &[u8]) -> Result<MetricBatch, Invalid> {
    gomon_proto::decode_batch(payload).map_err(|_| Invalid::Decode)
}

/// Messages larger than this are checked on the wire before they are decoded.
pub const WIRE_CHECK_BYTES: usize = 64 << 10;

/// Decodes a Kafka message's value into a batch within `limits`, at `now_ms`.
///
/// Every limit is checked once decoded; a message over [`WIRE_CHECK_BYTES`] has its size, host, number of samples,
/// labels per sample and metric names' lengths checked on the wire first, before anything is allocated, so a
/// hostile message costs no more memory than about its size. Label lengths (a string costs what its bytes cost) and
/// the collection time are only checked after decoding.
pub fn decode_within(
    payload: &[u8],
    limits: &LimitsConfig,
    now_ms: i64,
) -> Result<MetricBatch, Invalid> {
    if payload.len() > limits.max_message_bytes {
        return Err(Invalid::TooLarge);
    }
    // Decoding multiplies the size of tiny samples and labels by up to ~30 (their structs): below this size that
    // stays under 2 MB, and an agent's batch (10 to 100 KB) is checked once decoded, in one pass.
    if payload.len() > WIRE_CHECK_BYTES {
        wire::check(payload, limits)?;
    }
    let batch = decode(payload)?;
    if batch.host.len() > limits.max_host_bytes {
        return Err(Invalid::HostTooLong);
    }
    if batch.samples.len() > limits.max_samples_per_batch {
        return Err(Invalid::TooManySamples);
    }
    for sample in &batch.samples {
        if sample.labels.len() > limits.max_labels_per_sample {
            return Err(Invalid::TooManyLabels);
        }
        if sample.name.len() > limits.max_label_value_bytes {
            return Err(Invalid::LabelTooLong);
        }
        for label in &sample.labels {
            if label.name.len() > limits.max_label_name_bytes
                || label.value.len() > limits.max_label_value_bytes
            {
                return Err(Invalid::LabelTooLong);
            }
        }
    }
    let max_future_ms = i64::try_from(limits.max_future.as_millis()).unwrap_or(i64::MAX);
    if batch.timestamp_ms > now_ms.saturating_add(max_future_ms) {
        return Err(Invalid::FutureTimestamp);
    }
    Ok(batch)
}

/// The limits checked on the protobuf wire format, without decoding: field numbers of `MetricBatch`, `Sample`,
/// `Label` (crates/proto/proto/gomon/metrics/v1). What is not well-formed is left to the decoder to refuse.
mod wire {
    use super::Invalid;
    use crate::config::LimitsConfig;

    fn varint(buf: &mut &[u8]) -> Option<u64> {
        // Tags and the lengths of names and labels fit in one byte.
        if let Some((&byte, rest)) = buf.split_first()
            && byte < 0x80
        {
            *buf = rest;
            return Some(u64::from(byte));
        }
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = buf.split_first()?;
            *buf = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }

    /// The next field: its number and, when length-delimited, its bytes. None at the end or when malformed.
    fn field<'a>(buf: &mut &'a [u8]) -> Option<(u64, Option<&'a [u8]>)> {
        if buf.is_empty() {
            return None;
        }
        let key = varint(buf)?;
        let skip = |buf: &mut &'a [u8], n: usize| {
            let (bytes, rest) = buf.split_at_checked(n)?;
            *buf = rest;
            Some(bytes)
        };
        let bytes = match key & 7 {
            0 => {
                varint(buf)?;
                None
            }
            1 => {
                skip(buf, 8)?;
                None
            }
            2 => {
                let len = usize::try_from(varint(buf)?).ok()?;
                Some(skip(buf, len)?)
            }
            5 => {
                skip(buf, 4)?;
                None
            }
            _ => return None,
        };
        Some((key >> 3, bytes))
    }

    pub(super) fn check(payload: &[u8], limits: &LimitsConfig) -> Result<(), Invalid> {
        let mut buf = payload;
        let mut samples = 0usize;
        while let Some((number, bytes)) = field(&mut buf) {
            match (number, bytes) {
                (1, Some(host)) if host.len() > limits.max_host_bytes => {
                    return Err(Invalid::HostTooLong);
                }
                (7, Some(sample)) => {
                    samples += 1;
                    if samples > limits.max_samples_per_batch {
                        return Err(Invalid::TooManySamples);
                    }
                    check_sample(sample, limits)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check_sample(mut buf: &[u8], limits: &LimitsConfig) -> Result<(), Invalid> {
        let mut labels = 0usize;
        while let Some((number, bytes)) = field(&mut buf) {
            match (number, bytes) {
                (1, Some(name)) if name.len() > limits.max_label_value_bytes => {
                    return Err(Invalid::LabelTooLong);
                }
                (2, Some(_)) => {
                    labels += 1;
                    if labels > limits.max_labels_per_sample {
                        return Err(Invalid::TooManyLabels);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The series of `batch`, one sample each, appended to `out`.
///
/// Labels: the sample's own, `host` from the batch (it wins over a sample's `host`: the batch says where the sample
/// was collected), then `added`'s external labels, `job` and `instance` for names the series does not have; sorted
/// by name as remote write requires. The whole batch is refused when one name is invalid, so a batch is written
/// entirely or not at all.
pub fn append_series(
    batch: MetricBatch,
    added: &AddedLabels,
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
    let target: Vec<(&str, String)> = [
        ("job", added.job.clone()),
        ("instance", added.instance(&batch.host)),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|value| (name, value)))
    .collect();
    for sample in batch.samples {
        if !valid_metric_name(&sample.name) {
            out.truncate(start);
            return Err(Invalid::InvalidName);
        }
        let mut labels =
            Vec::with_capacity(sample.labels.len() + 2 + added.external.len() + target.len());
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
        let external = added
            .external
            .iter()
            .map(|(name, value)| (name.as_str(), value));
        for (name, value) in external.chain(target.iter().map(|(name, value)| (*name, value))) {
            if !labels.iter().any(|label| label.name == name) {
                labels.push(Label {
                    name: name.to_owned(),
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
        let external = AddedLabels {
            external: vec![
                ("cluster".to_owned(), "prod-eu".to_owned()),
                ("mode".to_owned(), "external-loses".to_owned()),
            ],
            ..AddedLabels::default()
        };
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
    fn job_and_instance_fill_in_after_the_external_labels() {
        let mut config = AggregatorConfig::default();
        let labels = |config: &AggregatorConfig, own: &[(&str, &str)]| {
            let mut out = Vec::new();
            append_series(
                batch(vec![sample("node_load1", own, 0.5)]),
                &AddedLabels::from_config(config),
                &mut out,
            )
            .expect("valid");
            pairs(&out[0])
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect::<Vec<_>>()
        };
        let owned = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect::<Vec<_>>()
        };
        // The defaults: what node_exporter's users select and group by, `host` kept.
        assert_eq!(
            labels(&config, &[]),
            owned(&[
                ("__name__", "node_load1"),
                ("host", "node-7"),
                ("instance", "node-7"),
                ("job", "node"),
            ])
        );
        // A template, another job; an external label of the same name wins, as does the sample's own.
        config.instance = "{host}:9100".to_owned();
        config.job = "hosts".to_owned();
        assert_eq!(
            labels(&config, &[]),
            owned(&[
                ("__name__", "node_load1"),
                ("host", "node-7"),
                ("instance", "node-7:9100"),
                ("job", "hosts"),
            ])
        );
        config
            .external_labels
            .insert("job".to_owned(), "from-external".to_owned());
        assert_eq!(
            labels(&config, &[("instance", "own")]),
            owned(&[
                ("__name__", "node_load1"),
                ("host", "node-7"),
                ("instance", "own"),
                ("job", "from-external"),
            ])
        );
        // Empty: no label.
        config.external_labels.clear();
        config.job.clear();
        config.instance.clear();
        assert_eq!(
            labels(&config, &[]),
            owned(&[("__name__", "node_load1"), ("host", "node-7")])
        );
    }

    #[test]
    fn a_batch_with_one_bad_name_is_refused_whole() {
        let mut out = Vec::new();
        append_series(
            batch(vec![sample("ok_metric", &[], 1.0)]),
            &AddedLabels::default(),
            &mut out,
        )
        .expect("valid");
        let bad = batch(vec![sample("fine", &[], 1.0), sample("bad name", &[], 2.0)]);
        assert_eq!(
            append_series(bad, &AddedLabels::default(), &mut out),
            Err(Invalid::InvalidName)
        );
        let bad_label = batch(vec![sample("fine", &[("0day", "x")], 1.0)]);
        assert_eq!(
            append_series(bad_label, &AddedLabels::default(), &mut out),
            Err(Invalid::InvalidName)
        );
        assert_eq!(out.len(), 1, "nothing of a refused batch stays");
        let mut no_host = batch(vec![]);
        no_host.host.clear();
        assert_eq!(
            append_series(no_host, &AddedLabels::default(), &mut out),
            Err(Invalid::NoHost)
        );
        let mut no_time = batch(vec![]);
        no_time.timestamp_ms = 0;
        assert_eq!(
            append_series(no_time, &AddedLabels::default(), &mut out),
            Err(Invalid::NoTimestamp)
        );
        assert_eq!(decode(b"\xff\xff\xff garbage"), Err(Invalid::Decode));
    }

    #[test]
    fn limits_refuse_a_batch_before_it_is_decoded() {
        let limits = LimitsConfig::default();
        let now = 1_700_000_000_000;
        // Each case as it is (checked once decoded) and padded over WIRE_CHECK_BYTES (checked on the wire first):
        // the same answer.
        let check = |batch: &MetricBatch| {
            let small = decode_within(&gomon_proto::encode_batch(batch), &limits, now).map(|_| ());
            let mut padded = batch.clone();
            padded.agent_version = "p".repeat(WIRE_CHECK_BYTES);
            let large =
                decode_within(&gomon_proto::encode_batch(&padded), &limits, now).map(|_| ());
            assert_eq!(small, large);
            small
        };
        let mut ok = batch(vec![sample("up", &[("job", "x"), ("host", "node-7")], 1.0)]);
        ok.timestamp_ms = now;
        assert_eq!(check(&ok), Ok(()));

        let mut long_host = ok.clone();
        long_host.host = "h".repeat(254);
        assert_eq!(check(&long_host), Err(Invalid::HostTooLong));
        let mut at_limit = ok.clone();
        at_limit.host = "h".repeat(253);
        assert_eq!(check(&at_limit), Ok(()));

        let mut many = ok.clone();
        many.samples = vec![sample("up", &[], 1.0); 50_001];
        assert_eq!(check(&many), Err(Invalid::TooManySamples));
        many.samples.truncate(50_000);
        assert_eq!(check(&many), Ok(()));

        let labels: Vec<(String, String)> =
            (0..33).map(|i| (format!("l{i}"), "v".to_owned())).collect();
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mut wide = ok.clone();
        wide.samples = vec![sample("up", &labels, 1.0)];
        assert_eq!(check(&wide), Err(Invalid::TooManyLabels));
        wide.samples = vec![sample("up", &labels[..32], 1.0)];
        assert_eq!(check(&wide), Ok(()));

        let long_name = "n".repeat(129);
        let long_value = "v".repeat(4097);
        let long_metric = "m".repeat(4097);
        for bad in [
            sample("up", &[(&long_name, "v")], 1.0),
            sample("up", &[("n", &long_value)], 1.0),
            sample(&long_metric, &[], 1.0),
        ] {
            let mut batch = ok.clone();
            batch.samples.push(bad);
            assert_eq!(check(&batch), Err(Invalid::LabelTooLong));
        }

        let mut future = ok.clone();
        future.timestamp_ms = now + 600_001;
        assert_eq!(check(&future), Err(Invalid::FutureTimestamp));
        future.timestamp_ms = now + 600_000;
        assert_eq!(check(&future), Ok(()));

        let payload = gomon_proto::encode_batch(&ok);
        let small = LimitsConfig {
            max_message_bytes: payload.len() - 1,
            ..LimitsConfig::default()
        };
        assert_eq!(
            decode_within(&payload, &small, now).map(|_| ()),
            Err(Invalid::TooLarge)
        );
        // Truncated or garbled wire: refused as undecodable, never a panic.
        for end in 0..payload.len() {
            let _ = decode_within(&payload[..end], &limits, now);
        }
        assert_eq!(
            decode_within(b"\x3a\xff\xff\xff\xff\x0f", &limits, now).map(|_| ()),
            Err(Invalid::Decode)
        );
        let reasons: std::collections::BTreeSet<_> = Invalid::ALL
            .iter()
            .map(|invalid| invalid.reason())
            .collect();
        assert_eq!(reasons.len(), Invalid::ALL.len());
    }
}
