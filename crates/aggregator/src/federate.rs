//! The `/federate` sink: the latest sample of every series, in the Prometheus text format, for installations that
//! scrape instead of running a remote write receiver (and for `gomon up`).
//!
//! A series disappears when its host has sent `stale_intervals` collection intervals without it (an interface that
//! went away), or when the host itself has been silent that long. A host's interval is the time between its last two
//! batches.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;

use gomon_proto::prometheus::TimeSeries;

/// Interval assumed for a host until its second batch arrives: the agent's default.
const DEFAULT_INTERVAL_MS: i64 = 20_000;

#[derive(Debug)]
struct Series {
    name: String,
    value: f64,
    timestamp_ms: i64,
}

#[derive(Debug, Default)]
struct Host {
    last_ms: i64,
    interval_ms: i64,
    /// Rendered labels (`{a="b",...}`) of each series, with the name kept apart.
    series: HashMap<String, Series>,
}

impl Host {
    fn stale_before(&self, stale_intervals: u32) -> i64 {
        self.last_ms - self.interval_ms.saturating_mul(i64::from(stale_intervals))
    }
}

/// The latest sample of every series, by host.
#[derive(Debug)]
pub struct Latest {
    stale_intervals: u32,
    hosts: Mutex<HashMap<String, Host>>,
}

impl Latest {
    /// An empty store; see the module documentation for `stale_intervals`.
    pub fn new(stale_intervals: u32) -> Self {
        Self {
            stale_intervals,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// Records one batch of `host` collected at `timestamp_ms` (its series as the transform made them).
    pub fn update(&self, host: &str, timestamp_ms: i64, series: &[TimeSeries]) {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let state = hosts.entry(host.to_owned()).or_default();
        if timestamp_ms < state.last_ms {
            // A replayed or late batch: newer values are already here.
            return;
        }
        state.interval_ms = match timestamp_ms - state.last_ms {
            gap if state.last_ms > 0 && gap > 0 => gap,
            _ if state.interval_ms > 0 => state.interval_ms,
            _ => DEFAULT_INTERVAL_MS,
        };
        state.last_ms = timestamp_ms;
        for one in series {
            let mut name = String::new();
            let mut labels = String::from("{");
            for label in &one.labels {
                if label.name == "__name__" {
                    name.clone_from(&label.value);
                    continue;
                }
                if labels.len() > 1 {
                    labels.push(',');
                }
                labels.push_str(&label.name);
                labels.push_str("=\"");
                gomon_runtime::metrics::escape_label_value(&label.value, &mut labels);
                labels.push('"');
            }
            labels.push('}');
            if let Some(sample) = one.samples.last() {
                state.series.insert(
                    format!("{name}{labels}"),
                    Series {
                        name,
                        value: sample.value,
                        timestamp_ms: sample.timestamp,
                    },
                );
            }
        }
        let stale_before = state.stale_before(self.stale_intervals);
        state
            .series
            .retain(|_, series| series.timestamp_ms > stale_before);
    }

    /// Every live series in the text format, families sorted by name; hosts silent for too long are forgotten.
    pub fn render(&self, now_ms: i64) -> String {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let stale_intervals = self.stale_intervals;
        hosts.retain(|_, host| {
            now_ms - host.last_ms <= host.interval_ms.saturating_mul(i64::from(stale_intervals))
        });
        let mut families: BTreeMap<&str, Vec<(&str, f64)>> = BTreeMap::new();
        for host in hosts.values() {
            for (key, series) in &host.series {
                families
                    .entry(series.name.as_str())
                    .or_default()
                    .push((key.as_str(), series.value));
            }
        }
        let mut text = String::new();
        for (name, mut series) in families {
            series.sort_by(|a, b| a.0.cmp(b.0));
            let _ = writeln!(text, "# TYPE {name} untyped");
            for (key, value) in series {
                let _ = writeln!(text, "{key} {value}");
            }
        }
        text
    }

    /// How many series are held.
    pub fn len(&self) -> usize {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts.values().map(|host| host.series.len()).sum()
    }

    /// Whether no series is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gomon_proto::prometheus::{Label, Sample};

    fn series(name: &str, device: &str, value: f64, timestamp: i64) -> TimeSeries {
        TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: name.into(),
                },
                Label {
                    name: "device".into(),
                    value: device.into(),
                },
                Label {
                    name: "host".into(),
                    value: "n1".into(),
                },
            ],
            samples: vec![Sample { value, timestamp }],
        }
    }

    #[test]
    fn latest_value_wins_and_vanished_series_expire() {
        let latest = Latest::new(2);
        latest.update(
            "n1",
            10_000,
            &[
                series("node_network_receive_bytes_total", "eth0", 1.0, 10_000),
                series("node_network_receive_bytes_total", "veth\"9", 5.0, 10_000),
            ],
        );
        latest.update(
            "n1",
            11_000,
            &[series(
                "node_network_receive_bytes_total",
                "eth0",
                2.0,
                11_000,
            )],
        );
        let text = latest.render(11_000);
        assert_eq!(
            text,
            "# TYPE node_network_receive_bytes_total untyped\n\
             node_network_receive_bytes_total{device=\"eth0\",host=\"n1\"} 2\n\
             node_network_receive_bytes_total{device=\"veth\\\"9\",host=\"n1\"} 5\n"
        );
        // Two intervals (of 1 s) later without veth"9, it is gone; eth0 stays.
        for t in [12_000, 13_000] {
            latest.update(
                "n1",
                t,
                &[series("node_network_receive_bytes_total", "eth0", 3.0, t)],
            );
        }
        let text = latest.render(13_000);
        assert!(text.contains("device=\"eth0\",host=\"n1\"} 3"), "{text}");
        assert!(!text.contains("veth"), "{text}");
        // A replayed old batch does not move values back.
        latest.update(
            "n1",
            10_000,
            &[series(
                "node_network_receive_bytes_total",
                "eth0",
                1.0,
                10_000,
            )],
        );
        assert!(latest.render(13_000).contains("} 3\n"));
        // The host falls silent: after two intervals everything of it is gone.
        assert_eq!(latest.len(), 1);
        assert!(latest.render(16_000).is_empty());
        assert!(latest.is_empty());
    }
}
