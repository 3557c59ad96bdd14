//! The `/federate` sink: the latest sample of every series, in the Prometheus text format, for installations that
//! scrape instead of running a remote write receiver (and for `gomon up`). It answers Prometheus's federation
//! contract: `match[]` selectors choose the series, each family carries its `# TYPE` from the agent's sample kind,
//! each sample its collection timestamp.
//!
//! A series disappears when its host has sent `stale_intervals` collection intervals without it (an interface that
//! went away). A host silent that long disappears whole, on the next [`Latest::prune`] (a timer) or render. A host's
//! interval is the time between its last two batches.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

use foldhash::fast::RandomState;
use std::sync::Mutex;

use gomon_proto::metrics::v1::sample::Kind;
use gomon_proto::prometheus::{Label, TimeSeries};
use gomon_runtime::metrics::{FamilyType, TextWriter};
use gomon_runtime::selector::Selector;

/// Interval assumed for a host until its second batch arrives: the agent's default.
const DEFAULT_INTERVAL_MS: i64 = 20_000;

/// A series' identity: its labels, `__name__` included, in the transform's order (sorted by name), kept in one
/// allocation: each name and value as a 4-byte little-endian length and its bytes. Comparing a batch's series with it
/// reads one contiguous buffer rather than a string per label.
#[derive(Debug)]
struct SeriesKey(Box<[u8]>);

impl SeriesKey {
    fn new(labels: &[Label]) -> Self {
        let size = labels
            .iter()
            .map(|label| 8 + label.name.len() + label.value.len())
            .sum();
        let mut bytes = Vec::with_capacity(size);
        for part in labels.iter().flat_map(|label| [&label.name, &label.value]) {
            // A label longer than 4 GiB cannot come through the message size limit.
            let length = u32::try_from(part.len()).unwrap_or(u32::MAX);
            bytes.extend_from_slice(&length.to_le_bytes());
            bytes.extend_from_slice(part.as_bytes());
        }
        Self(bytes.into_boxed_slice())
    }

    /// Whether `labels` are this series' labels.
    fn is(&self, labels: &[Label]) -> bool {
        let mut rest = &self.0[..];
        for part in labels.iter().flat_map(|label| [&label.name, &label.value]) {
            let Some((length, after)) = rest.split_first_chunk::<4>() else {
                return false;
            };
            if u32::from_le_bytes(*length) as usize != part.len()
                || !after.starts_with(part.as_bytes())
            {
                return false;
            }
            rest = &after[part.len()..];
        }
        rest.is_empty()
    }

    /// Every label, `__name__` included, as (name, value).
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut rest = &self.0[..];
        let mut next = move || {
            let (length, after) = rest.split_first_chunk::<4>()?;
            let length = u32::from_le_bytes(*length) as usize;
            let (part, after) = after.split_at_checked(length)?;
            rest = after;
            std::str::from_utf8(part).ok()
        };
        std::iter::from_fn(move || Some((next()?, next()?)))
    }

    fn name(&self) -> &str {
        self.label("__name__").unwrap_or("")
    }

    fn label(&self, name: &str) -> Option<&str> {
        self.pairs()
            .find(|(label, _)| *label == name)
            .map(|(_, value)| value)
    }

    /// The labels other than `__name__`, in order.
    fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs().filter(|(name, _)| *name != "__name__")
    }
}

/// The hash of a series' labels, the key of its bucket in [`Host::series`].
fn labels_hash(state: &RandomState, labels: &[Label]) -> u64 {
    let mut hasher = state.build_hasher();
    for label in labels {
        label.name.hash(&mut hasher);
        label.value.hash(&mut hasher);
    }
    hasher.finish()
}

#[derive(Debug)]
struct Point {
    kind: FamilyType,
    value: f64,
    timestamp_ms: i64,
}

#[derive(Debug, Default)]
struct Host {
    last_ms: i64,
    interval_ms: i64,
    /// The series by the hash of their labels: a batch updates the series it has seen before without copying
    /// their labels again.
    series: HashMap<u64, Vec<(SeriesKey, Point)>>,
}

impl Host {
    /// The span of `stale_intervals` of this host's intervals, in milliseconds.
    fn staleness_ms(&self, stale_intervals: u32) -> i64 {
        self.interval_ms.saturating_mul(i64::from(stale_intervals))
    }
}

/// The `# TYPE` of a sample kind; an unset kind is a gauge, as the batch format says.
fn family_type(kind: i32) -> FamilyType {
    match Kind::try_from(kind) {
        Ok(Kind::Counter) => FamilyType::Counter,
        Ok(Kind::Gauge | Kind::Unspecified) => FamilyType::Gauge,
        Err(_) => FamilyType::Untyped,
    }
}

/// The latest sample of every series, by host.
#[derive(Debug)]
pub struct Latest {
    stale_intervals: u32,
    hosts: Mutex<HashMap<String, Host>>,
    hasher: RandomState,
}

impl Latest {
    /// An empty store; see the module documentation for `stale_intervals`.
    pub fn new(stale_intervals: u32) -> Self {
        Self {
            stale_intervals,
            hosts: Mutex::new(HashMap::new()),
            hasher: RandomState::default(),
        }
    }

    /// Records one batch of `host` collected at `timestamp_ms`: its series as the transform made them, and the kind
    /// of each (the batch's `Sample.kind`, in the same order).
    pub fn update(&self, host: &str, timestamp_ms: i64, series: &[TimeSeries], kinds: &[i32]) {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let state = match hosts.get_mut(host) {
            Some(state) => state,
            None => hosts.entry(host.to_owned()).or_default(),
        };
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
        for (one, kind) in series.iter().zip(kinds) {
            let Some(sample) = one.samples.last() else {
                continue;
            };
            let point = Point {
                kind: family_type(*kind),
                value: sample.value,
                timestamp_ms: sample.timestamp,
            };
            let bucket = state
                .series
                .entry(labels_hash(&self.hasher, &one.labels))
                .or_default();
            match bucket.iter_mut().find(|(key, _)| key.is(&one.labels)) {
                Some((_, known)) => *known = point,
                None => bucket.push((SeriesKey::new(&one.labels), point)),
            }
        }
        let stale_before = state.last_ms - state.staleness_ms(self.stale_intervals);
        state.series.retain(|_, bucket| {
            bucket.retain(|(_, point)| point.timestamp_ms > stale_before);
            !bucket.is_empty()
        });
    }

    /// Forgets the hosts silent for `stale_intervals` of their intervals at `now_ms`.
    pub fn prune(&self, now_ms: i64) {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let stale_intervals = self.stale_intervals;
        hosts.retain(|_, host| now_ms - host.last_ms <= host.staleness_ms(stale_intervals));
    }

    /// The live series that any of `selectors` selects (every series when there are none), in the text format,
    /// families sorted by name, each with its `# TYPE` (`untyped` when hosts disagree) and timestamps.
    pub fn render(&self, now_ms: i64, selectors: &[Selector]) -> String {
        self.prune(now_ms);
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let mut selected: Vec<(&str, &SeriesKey, &Point)> = Vec::new();
        for host in hosts.values() {
            for (key, point) in host.series.values().flatten() {
                if selectors.is_empty()
                    || selectors
                        .iter()
                        .any(|selector| selector.matches(|name| key.label(name)))
                {
                    selected.push((key.name(), key, point));
                }
            }
        }
        selected.sort_unstable_by(|a, b| a.0.cmp(b.0).then_with(|| a.1.labels().cmp(b.1.labels())));
        let mut writer = TextWriter::default();
        let mut start = 0;
        while start < selected.len() {
            let name = selected[start].0;
            let end = selected[start..]
                .iter()
                .position(|series| series.0 != name)
                .map_or(selected.len(), |length| start + length);
            let family = &selected[start..end];
            let kind = family[0].2.kind;
            let kind = if family.iter().all(|series| series.2.kind == kind) {
                kind
            } else {
                FamilyType::Untyped
            };
            writer.family(name, kind, None);
            for (_, key, point) in family {
                writer.sample(name, key.labels(), point.value, Some(point.timestamp_ms));
            }
            start = end;
        }
        writer.finish()
    }

    /// How many series are held.
    pub fn len(&self) -> usize {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts
            .values()
            .flat_map(|host| host.series.values())
            .map(Vec::len)
            .sum()
    }

    /// How many hosts are held.
    pub fn hosts(&self) -> usize {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no series is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gomon_proto::prometheus::Sample;

    const COUNTER: i32 = Kind::Counter as i32;
    const GAUGE: i32 = Kind::Gauge as i32;

    fn series(name: &str, host: &str, device: &str, value: f64, timestamp: i64) -> TimeSeries {
        let label = |name: &str, value: &str| Label {
            name: name.into(),
            value: value.into(),
        };
        TimeSeries {
            labels: vec![
                label("__name__", name),
                label("device", device),
                label("host", host),
            ],
            samples: vec![Sample { value, timestamp }],
        }
    }

    fn rx(device: &str, value: f64, timestamp: i64) -> TimeSeries {
        series(
            "node_network_receive_bytes_total",
            "n1",
            device,
            value,
            timestamp,
        )
    }

    #[test]
    fn a_series_key_is_its_labels_exactly() {
        let label = |name: &str, value: &str| Label {
            name: name.into(),
            value: value.into(),
        };
        let labels = [label("__name__", "up"), label("a", "b\0c"), label("d", "")];
        let key = SeriesKey::new(&labels);
        assert!(key.is(&labels));
        assert_eq!(key.name(), "up");
        assert_eq!(key.label("a"), Some("b\0c"));
        assert_eq!(key.labels().collect::<Vec<_>>(), [("a", "b\0c"), ("d", "")]);
        // Where one part ends matters, and so does every label.
        assert!(!key.is(&[label("__name__", "up"), label("ab", "\0c"), label("d", "")]));
        assert!(!key.is(&labels[..2]));
        assert!(!SeriesKey::new(&labels[..2]).is(&labels));
    }

    #[test]
    fn latest_value_wins_and_vanished_series_expire() {
        let latest = Latest::new(2);
        latest.update(
            "n1",
            10_000,
            &[rx("eth0", 1.0, 10_000), rx("veth\"9", 5.0, 10_000)],
            &[COUNTER, COUNTER],
        );
        latest.update("n1", 11_000, &[rx("eth0", 2.0, 11_000)], &[COUNTER]);
        let text = latest.render(11_000, &[]);
        assert_eq!(
            text,
            "# TYPE node_network_receive_bytes_total counter\n\
             node_network_receive_bytes_total{device=\"eth0\",host=\"n1\"} 2 11000\n\
             node_network_receive_bytes_total{device=\"veth\\\"9\",host=\"n1\"} 5 10000\n"
        );
        // Two intervals (of 1 s) later without veth"9, it is gone; eth0 stays.
        for t in [12_000, 13_000] {
            latest.update("n1", t, &[rx("eth0", 3.0, t)], &[COUNTER]);
        }
        let text = latest.render(13_000, &[]);
        assert!(
            text.contains("device=\"eth0\",host=\"n1\"} 3 13000"),
            "{text}"
        );
        assert!(!text.contains("veth"), "{text}");
        // A replayed old batch does not move values back.
        latest.update("n1", 10_000, &[rx("eth0", 1.0, 10_000)], &[COUNTER]);
        assert!(latest.render(13_000, &[]).contains("} 3 13000\n"));
        // The host falls silent: after two intervals everything of it is gone.
        assert_eq!(latest.len(), 1);
        assert!(latest.render(16_000, &[]).is_empty());
        assert!(latest.is_empty());
    }

    #[test]
    fn silent_hosts_are_dropped_by_the_timer_without_a_scrape() {
        let latest = Latest::new(5);
        for host in 0..1000 {
            let host = format!("pod-{host}");
            latest.update(
                &host,
                1_000_000,
                &[series("node_load1", &host, "", 0.5, 1_000_000)],
                &[GAUGE],
            );
        }
        latest.update(
            "steady",
            1_080_000,
            &[series("node_load1", "steady", "", 0.5, 1_080_000)],
            &[GAUGE],
        );
        assert_eq!(latest.hosts(), 1001);
        // Five default intervals (20 s) after their only batch, the 1000 hosts are gone; the steady one stays.
        latest.prune(1_100_001);
        assert_eq!(latest.hosts(), 1);
        assert_eq!(latest.len(), 1);
    }

    #[test]
    fn match_selects_series_and_families_carry_their_type() {
        let latest = Latest::new(5);
        latest.update(
            "n1",
            10_000,
            &[
                series("node_load1", "n1", "", 0.25, 10_000),
                rx("eth0", 7.0, 10_000),
                rx("lo", 1.0, 10_000),
                series("node_cpu_seconds_total", "n1", "", 100.0, 10_000),
            ],
            &[GAUGE, COUNTER, COUNTER, Kind::Unspecified as i32],
        );
        // Another host's agent calls the CPU family a counter: the families disagree, so it is untyped.
        latest.update(
            "n2",
            10_000,
            &[series("node_cpu_seconds_total", "n2", "", 50.0, 10_000)],
            &[COUNTER],
        );
        let all = latest.render(10_000, &[]);
        assert!(all.contains("# TYPE node_load1 gauge\n"), "{all}");
        assert!(
            all.contains("# TYPE node_network_receive_bytes_total counter\n"),
            "{all}"
        );
        assert!(
            all.contains("# TYPE node_cpu_seconds_total untyped\n"),
            "{all}"
        );
        let selectors = [
            Selector::parse("node_load1").expect("selector"),
            Selector::parse(r#"{__name__=~"node_network_.*",device!="lo"}"#).expect("selector"),
        ];
        assert_eq!(
            latest.render(10_000, &selectors),
            "# TYPE node_load1 gauge\n\
             node_load1{device=\"\",host=\"n1\"} 0.25 10000\n\
             # TYPE node_network_receive_bytes_total counter\n\
             node_network_receive_bytes_total{device=\"eth0\",host=\"n1\"} 7 10000\n"
        );
        let none = [Selector::parse(r#"{host="n9"}"#).expect("selector")];
        assert!(latest.render(10_000, &none).is_empty());
    }
}
