//! Wire-format tests: round trips, malformed input, forward compatibility, prompb field numbers.

use std::collections::BTreeMap;

use gomon_proto::metrics::v1::{Label, MetricBatch, Sample, sample::Kind};
use gomon_proto::prometheus::{self as prompb, WriteRequest};
use gomon_proto::prost::Message;
use gomon_proto::{CONTENT_TYPE, decode_batch, encode_batch};

fn sample_batch() -> MetricBatch {
    MetricBatch {
        host: "web-01".into(),
        timestamp_ms: 1_700_000_000_123,
        agent_version: "0.1.0".into(),
        correlation_id: "7f1c1a52-2f4e-4c1b-9a57-0f8b1b0b6f3e".into(),
        trace_context: BTreeMap::from([(
            "traceparent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        )]),
        sequence: 42,
        samples: vec![
            Sample {
                name: "node_load1".into(),
                labels: vec![],
                value: 0.75,
                kind: Kind::Gauge.into(),
            },
            Sample {
                name: "node_cpu_seconds_total".into(),
                labels: vec![
                    Label {
                        name: "cpu".into(),
                        value: "0".into(),
                    },
                    Label {
                        name: "mode".into(),
                        value: "idle".into(),
                    },
                ],
                value: 12345.5,
                kind: Kind::Counter.into(),
            },
        ],
    }
}

#[test]
fn batch_round_trips() {
    let batch = sample_batch();
    let bytes = encode_batch(&batch);
    let decoded = decode_batch(&bytes).expect("decode");
    assert_eq!(decoded, batch);
    assert_eq!(decoded.samples[1].kind(), Kind::Counter);
    // Encoding is deterministic.
    assert_eq!(encode_batch(&decoded), bytes);
}

#[test]
fn empty_batch_encodes_to_nothing_and_decodes_to_default() {
    assert!(encode_batch(&MetricBatch::default()).is_empty());
    assert_eq!(decode_batch(&[]).expect("decode"), MetricBatch::default());
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let inputs: &[&[u8]] = &[
        // Truncated length-delimited field: host claims 10 bytes, has 2.
        &[0x0a, 0x0a, b'a', b'b'],
        // Varint that never terminates.
        &[
            0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
        // Field number 0 is invalid.
        &[0x00, 0x01],
        // Invalid wire type 7.
        &[0x0f],
        // host is not valid UTF-8.
        &[0x0a, 0x02, 0xff, 0xfe],
    ];
    for input in inputs {
        assert!(
            decode_batch(input).is_err(),
            "expected error for {input:02x?}"
        );
    }
    // Arbitrary byte soup: whatever the result, no panic.
    let mut state: u32 = 0x1234_5678;
    for len in 0..512 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        let _ = decode_batch(&bytes);
    }
}

#[test]
fn unknown_fields_are_ignored() {
    let batch = sample_batch();
    let mut bytes = encode_batch(&batch);
    // Field 99, wire type 2 (length-delimited): key = (99 << 3) | 2 = 794 = varint 0x9a 0x06.
    bytes.extend_from_slice(&[0x9a, 0x06, 0x03, b'n', b'e', b'w']);
    // Field 99 again as a varint (wire type 0): key = 792 = 0x98 0x06, value 1.
    bytes.extend_from_slice(&[0x98, 0x06, 0x01]);
    assert_eq!(
        decode_batch(&bytes).expect("decode with unknown fields"),
        batch
    );
}

#[test]
fn batch_field_numbers_are_stable() {
    let batch = MetricBatch {
        host: "h".into(),
        timestamp_ms: 1,
        sequence: 2,
        ..Default::default()
    };
    // host: field 1 LEN; timestamp_ms: field 2 VARINT; sequence: field 6 VARINT.
    assert_eq!(
        encode_batch(&batch),
        [0x0a, 0x01, b'h', 0x10, 0x01, 0x30, 0x02]
    );
}

#[test]
fn write_request_uses_prompb_field_numbers() {
    let request = WriteRequest {
        timeseries: vec![prompb::TimeSeries {
            labels: vec![prompb::Label {
                name: "a".into(),
                value: "b".into(),
            }],
            samples: vec![prompb::Sample {
                value: 1.0,
                timestamp: 5,
            }],
        }],
        metadata: vec![prompb::MetricMetadata {
            r#type: prompb::metric_metadata::MetricType::Gauge.into(),
            metric_family_name: "m".into(),
            help: "h".into(),
            unit: "u".into(),
        }],
    };
    let bytes = request.encode_to_vec();
    #[rustfmt::skip]
    let expected: &[u8] = &[
        // WriteRequest.timeseries (1, LEN), 21 bytes
        0x0a, 0x15,
            // TimeSeries.labels (1, LEN), 6 bytes: name (1) "a", value (2) "b"
            0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b',
            // TimeSeries.samples (2, LEN), 11 bytes
            0x12, 0x0b,
                // Sample.value (1, I64) = 1.0
                0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f,
                // Sample.timestamp (2, VARINT) = 5
                0x10, 0x05,
        // WriteRequest.metadata (3, LEN), 11 bytes
        0x1a, 0x0b,
            // type (1, VARINT) = GAUGE (2)
            0x08, 0x02,
            // metric_family_name (2, LEN) "m"
            0x12, 0x01, b'm',
            // help (4, LEN) "h"
            0x22, 0x01, b'h',
            // unit (5, LEN) "u"
            0x2a, 0x01, b'u',
    ];
    assert_eq!(bytes, expected);
    assert_eq!(
        WriteRequest::decode(bytes.as_slice()).expect("decode"),
        request
    );
}

#[test]
fn metric_type_values_match_prometheus() {
    use prompb::metric_metadata::MetricType;
    let expected = [
        (MetricType::Unknown, 0),
        (MetricType::Counter, 1),
        (MetricType::Gauge, 2),
        (MetricType::Histogram, 3),
        (MetricType::Gaugehistogram, 4),
        (MetricType::Summary, 5),
        (MetricType::Info, 6),
        (MetricType::Stateset, 7),
    ];
    for (ty, value) in expected {
        assert_eq!(ty as i32, value, "{ty:?}");
    }
}

#[test]
fn content_type_is_protobuf() {
    assert_eq!(CONTENT_TYPE, "application/x-protobuf");
}
