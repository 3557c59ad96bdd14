//! What one collection produces: samples of named, labelled series at one instant.

/// Whether a series only goes up (until a reset) or goes up and down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A monotonic total since some start (boot, interface creation); rates are taken by the query.
    Counter,
    /// A value at the instant of collection.
    Gauge,
}

/// One value of one series.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Series name, Prometheus style (`node_cpu_seconds_total`).
    pub name: String,
    /// Label pairs sorted by name; always includes `host`.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
    /// Counter or gauge.
    pub kind: Kind,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(label, _)| label == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Every sample of one collection cycle.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The `host` label of every sample.
    pub host: String,
    /// When the cycle started, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The samples, grouped by subsystem in a fixed order.
    pub samples: Vec<Sample>,
}

impl Snapshot {
    /// Samples named `name`.
    pub fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The sample named `name` whose labels, other than `host`, are exactly `labels` (in any order).
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Sample> {
        self.samples.iter().find(|sample| {
            let own = sample.labels.iter().filter(|(label, _)| label != "host");
            sample.name == name
                && own.clone().count() == labels.len()
                && own.into_iter().all(|(label, value)| {
                    labels
                        .iter()
                        .any(|(want, wanted)| want == label && wanted == value)
                })
        })
    }
}

/// Builds samples that all carry the same `host` label.
#[derive(Debug)]
pub(crate) struct Samples {
    host: String,
    samples: Vec<Sample>,
}

impl Samples {
    /// An empty set for `host`.
    pub(crate) fn new(host: &str) -> Self {
        Self {
            host: host.to_owned(),
            samples: Vec::new(),
        }
    }

    /// Adds a counter.
    pub(crate) fn counter(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.push(name, labels, value, Kind::Counter);
    }

    /// Adds a gauge.
    pub(crate) fn gauge(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.push(name, labels, value, Kind::Gauge);
    }

    fn push(&mut self, name: &str, labels: &[(&str, &str)], value: f64, kind: Kind) {
        let mut pairs: Vec<(String, String)> = Vec::with_capacity(labels.len() + 1);
        pairs.push(("host".to_owned(), self.host.clone()));
        pairs.extend(
            labels
                .iter()
                .map(|(label, value)| ((*label).to_owned(), (*value).to_owned())),
        );
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        self.samples.push(Sample {
            name: name.to_owned(),
            labels: pairs,
            value,
            kind,
        });
    }

    /// The samples added so far.
    pub(crate) fn into_vec(self) -> Vec<Sample> {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_and_include_host() {
        let mut samples = Samples::new("node-1");
        samples.counter(
            "node_cpu_seconds_total",
            &[("mode", "user"), ("cpu", "0")],
            1.5,
        );
        let samples = samples.into_vec();
        assert_eq!(
            samples[0].labels,
            vec![
                ("cpu".to_owned(), "0".to_owned()),
                ("host".to_owned(), "node-1".to_owned()),
                ("mode".to_owned(), "user".to_owned()),
            ]
        );
        assert_eq!(samples[0].kind, Kind::Counter);
        assert_eq!(samples[0].label("mode"), Some("user"));
        let snapshot = Snapshot {
            host: "node-1".to_owned(),
            timestamp_ms: 0,
            samples,
        };
        assert!(
            snapshot
                .find("node_cpu_seconds_total", &[("mode", "user"), ("cpu", "0")])
                .is_some()
        );
        assert!(
            snapshot
                .find("node_cpu_seconds_total", &[("mode", "user")])
                .is_none()
        );
    }
}
