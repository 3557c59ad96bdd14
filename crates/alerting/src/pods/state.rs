//! The watcher's state: the pods it has seen, folded from watch events, and the alerts it keeps open. Deciding
//! which alerts to open and which to resolve is a pure function of that state and the time ([`Tracker::evaluate`]);
//! the caller carries the decisions out through the alerting service and reports back.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use uuid::Uuid;

use super::config::KubernetesConfig;
use super::pod::{self, Failure, RestartHistory, Workload};
use crate::model::{Alert, MAX_TITLE, NewAlert, truncate};

/// The `source` of the alerts the watcher raises.
pub const SOURCE: &str = "kubernetes";
/// The actor recorded in the audit trail of the watcher's changes.
pub const ACTOR: &str = "kubernetes-watcher";

/// What one alert is about: a workload failing for one reason. Its labels are the alert's identity, so replicas of
/// one workload, a restarted watcher and a second replica all land on the same alert.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlertKey {
    /// The namespace.
    pub namespace: String,
    /// The workload.
    pub workload: Workload,
    /// Why it fails.
    pub reason: String,
}

impl AlertKey {
    /// The alert's identifying labels: `namespace`, `workload_kind`, `workload`, `reason`.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("namespace".to_owned(), self.namespace.clone()),
            ("workload_kind".to_owned(), self.workload.kind.clone()),
            ("workload".to_owned(), self.workload.name.clone()),
            ("reason".to_owned(), self.reason.clone()),
        ])
    }

    /// The key of an alert the watcher raised, read back from its labels.
    pub fn of(alert: &Alert) -> Option<AlertKey> {
        let label = |name: &str| alert.labels.get(name).cloned();
        Some(AlertKey {
            namespace: label("namespace")?,
            workload: Workload {
                kind: label("workload_kind")?,
                name: label("workload")?,
            },
            reason: label("reason")?,
        })
    }

    fn title(&self) -> String {
        truncate(
            &format!(
                "{} {} in {}: {}",
                self.workload.kind, self.workload.name, self.namespace, self.reason
            ),
            MAX_TITLE,
        )
    }
}

struct TrackedPod {
    pod: Pod,
    stream: usize,
    restarts: HashMap<String, RestartHistory>,
}

/// The reason a container's current failure episode was first reported under, and when it was last seen failing.
struct Episode {
    reason: String,
    last_seen: DateTime<Utc>,
}

/// An alert the watcher keeps open (or is about to open).
struct Open {
    last_failing: DateTime<Utc>,
    alert: Option<Uuid>,
}

/// What to do after an evaluation.
#[derive(Debug, Default)]
pub struct Plan {
    /// Alerts to create (the service returns the open one when it exists already).
    pub create: Vec<(AlertKey, NewAlert)>,
    /// Alerts to resolve, with the note for the audit trail.
    pub resolve: Vec<(AlertKey, Uuid, String)>,
    /// Failing pods per (namespace, reason), for `alerting_kube_pods_failing`.
    pub failing_pods: BTreeMap<(String, String), i64>,
}

/// The pods seen and the alerts kept open.
pub struct Tracker {
    config: KubernetesConfig,
    pods: BTreeMap<String, TrackedPod>,
    listing: HashMap<usize, Vec<Pod>>,
    episodes: HashMap<(String, String), Episode>,
    open: BTreeMap<AlertKey, Open>,
}

fn pod_id(pod: &Pod) -> String {
    pod.metadata
        .uid
        .clone()
        .unwrap_or_else(|| format!("{}/{}", pod::namespace(pod), pod::name(pod)))
}

impl Tracker {
    /// An empty state.
    pub fn new(config: KubernetesConfig) -> Self {
        Self {
            config,
            pods: BTreeMap::new(),
            listing: HashMap::new(),
            episodes: HashMap::new(),
            open: BTreeMap::new(),
        }
    }

    /// Pods currently known.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// A pod was added or changed (seen by watch `stream`).
    pub fn apply(&mut self, stream: usize, pod: Pod, now: DateTime<Utc>) {
        let id = pod_id(&pod);
        let restarts = self
            .pods
            .remove(&id)
            .map(|tracked| tracked.restarts)
            .unwrap_or_default();
        let mut tracked = TrackedPod {
            pod,
            stream,
            restarts,
        };
        for container in pod::containers(&tracked.pod) {
            tracked
                .restarts
                .entry(container.name.clone())
                .or_default()
                .record(now, container.restart_count);
        }
        self.pods.insert(id, tracked);
    }

    /// A pod was deleted.
    pub fn delete(&mut self, pod: &Pod) {
        self.pods.remove(&pod_id(pod));
    }

    /// Watch `stream` starts a (re-)list: the pods it lists next replace those it had.
    pub fn list_started(&mut self, stream: usize) {
        self.listing.insert(stream, Vec::new());
    }

    /// A pod of the list under way on `stream`.
    pub fn listed(&mut self, stream: usize, pod: Pod) {
        self.listing.entry(stream).or_default().push(pod);
    }

    /// The list of `stream` is complete: its pods replace those the stream had; pods not listed are gone.
    pub fn list_done(&mut self, stream: usize, now: DateTime<Utc>) {
        let listed = self.listing.remove(&stream).unwrap_or_default();
        let ids: BTreeSet<String> = listed.iter().map(pod_id).collect();
        self.pods
            .retain(|id, tracked| tracked.stream != stream || ids.contains(id));
        for pod in listed {
            self.apply(stream, pod, now);
        }
    }

    /// Whether the watcher is responsible for alerts of `namespace`.
    pub fn watches(&self, namespace: &str) -> bool {
        self.config.all_namespaces || self.config.namespaces.iter().any(|n| n == namespace)
    }

    /// Takes charge of the open alerts the watcher raised before (an earlier process, another replica, or before a
    /// re-list): each is kept while its condition holds, and resolved once it has been gone for the stabilisation
    /// window, counted from now. Alerts of namespaces not watched are left alone.
    pub fn adopt(&mut self, alerts: &[Alert], now: DateTime<Utc>) {
        for alert in alerts {
            let Some(key) = AlertKey::of(alert) else {
                continue;
            };
            if !self.watches(&key.namespace) {
                continue;
            }
            let open = self.open.entry(key).or_insert(Open {
                last_failing: now,
                alert: None,
            });
            open.alert.get_or_insert(alert.id);
        }
    }

    /// The alert for `key` is open with `id`.
    pub fn opened(&mut self, key: &AlertKey, id: Uuid) {
        if let Some(open) = self.open.get_mut(key) {
            open.alert = Some(id);
        }
    }

    /// The alert for `key` is resolved (by the watcher, or by someone else before it).
    pub fn resolved(&mut self, key: &AlertKey) {
        self.open.remove(key);
    }

    /// Decides, at `now`, which alerts to open and which to resolve.
    pub fn evaluate(&mut self, now: DateTime<Utc>) -> Plan {
        let mut plan = Plan::default();
        let window = self.config.restart_window;
        let stabilization =
            chrono::Duration::from_std(self.config.stabilization_window).unwrap_or_default();
        let mut failing: BTreeMap<AlertKey, Vec<(&Pod, Failure)>> = BTreeMap::new();
        let mut workloads_present: BTreeSet<(String, Workload)> = BTreeSet::new();
        let mut by_name: Vec<(&String, &mut TrackedPod)> = self.pods.iter_mut().collect();
        by_name.sort_by(|a, b| {
            (pod::namespace(&a.1.pod), pod::name(&a.1.pod))
                .cmp(&(pod::namespace(&b.1.pod), pod::name(&b.1.pod)))
        });
        for (id, tracked) in by_name {
            let restarts: HashMap<String, u32> = tracked
                .restarts
                .iter_mut()
                .map(|(name, history)| (name.clone(), history.within(now, window)))
                .collect();
            let pod = &tracked.pod;
            let workload = pod::workload(pod);
            let namespace = pod::namespace(pod).to_owned();
            workloads_present.insert((namespace.clone(), workload.clone()));
            let failures = pod::failures(pod, now, &self.config, &|container| {
                restarts.get(container).copied().unwrap_or(0)
            });
            let mut reasons = BTreeSet::new();
            for mut failure in failures {
                if let Some(container) = &failure.container {
                    // One episode of one container keeps the reason it started with, so a crash loop that shows
                    // as CrashLoopBackOff, then Restarts while it briefly runs, stays one alert.
                    let episode = self
                        .episodes
                        .entry((id.clone(), container.clone()))
                        .or_insert_with(|| Episode {
                            reason: failure.reason.clone(),
                            last_seen: now,
                        });
                    if now - episode.last_seen > stabilization {
                        episode.reason = failure.reason.clone();
                    }
                    episode.last_seen = now;
                    failure.reason = episode.reason.clone();
                }
                if reasons.insert(failure.reason.clone()) {
                    *plan
                        .failing_pods
                        .entry((namespace.clone(), failure.reason.clone()))
                        .or_default() += 1;
                }
                let key = AlertKey {
                    namespace: namespace.clone(),
                    workload: workload.clone(),
                    reason: failure.reason.clone(),
                };
                failing.entry(key).or_default().push((pod, failure));
            }
        }
        self.episodes
            .retain(|_, episode| now - episode.last_seen <= stabilization);
        for (key, pods) in &failing {
            let open = self.open.entry(key.clone()).or_insert(Open {
                last_failing: now,
                alert: None,
            });
            open.last_failing = now;
            if open.alert.is_none() {
                plan.create
                    .push((key.clone(), new_alert(key, pods, &self.config)));
            }
        }
        let mut forget = Vec::new();
        for (key, open) in &self.open {
            if failing.contains_key(key) || now - open.last_failing < stabilization {
                continue;
            }
            match open.alert {
                Some(id) => {
                    let present =
                        workloads_present.contains(&(key.namespace.clone(), key.workload.clone()));
                    let note = format!(
                        "No pod of {} {} has failed with {} for {}: {}.",
                        key.workload.kind,
                        key.workload.name,
                        key.reason,
                        humantime_serde::re::humantime::format_duration(
                            self.config.stabilization_window
                        ),
                        if present {
                            "its pods are healthy"
                        } else {
                            "its failing pods are gone"
                        }
                    );
                    plan.resolve.push((key.clone(), id, note));
                }
                None => forget.push(key.clone()),
            }
        }
        for key in forget {
            self.open.remove(&key);
        }
        plan
    }
}

/// The alert for `key`, described from the first of its failing pods.
fn new_alert(key: &AlertKey, pods: &[(&Pod, Failure)], config: &KubernetesConfig) -> NewAlert {
    let mut annotations = BTreeMap::new();
    let Some((first, failure)) = pods.first() else {
        return NewAlert {
            source: SOURCE.to_owned(),
            severity: config.default_severity,
            title: key.title(),
            namespace: Some(key.namespace.clone()),
            labels: key.labels(),
            ..NewAlert::default()
        };
    };
    let pod_name = pod::name(first);
    let node = first
        .spec
        .as_ref()
        .and_then(|spec| spec.node_name.clone())
        .unwrap_or_else(|| "none".to_owned());
    let restart_count: i32 = pod::containers(first)
        .filter(|c| {
            failure
                .container
                .as_ref()
                .is_none_or(|name| *name == c.name)
        })
        .map(|c| c.restart_count)
        .sum();
    annotations.insert("pod".to_owned(), pod_name.to_owned());
    annotations.insert("node".to_owned(), node.clone());
    annotations.insert("restart_count".to_owned(), restart_count.to_string());
    if let Some(container) = &failure.container {
        annotations.insert("container".to_owned(), container.clone());
    }
    if let Some(exit_code) = failure.exit_code {
        annotations.insert("exit_code".to_owned(), exit_code.to_string());
    }
    let mut description = format!(
        "Pod {pod_name} of {} {} in namespace {} (node {node}): {}.",
        key.workload.kind, key.workload.name, key.namespace, failure.detail
    );
    if pods.len() > 1 {
        let names: Vec<&str> = pods.iter().map(|(pod, _)| pod::name(pod)).collect();
        description.push_str(&format!(
            " {} pods of this {} fail the same way: {}.",
            pods.len(),
            key.workload.kind,
            names.join(", ")
        ));
        annotations.insert("pods".to_owned(), names.join(","));
    }
    NewAlert {
        source: SOURCE.to_owned(),
        severity: pod::severity(first, &key.workload, config),
        title: key.title(),
        description: Some(description),
        namespace: Some(key.namespace.clone()),
        labels: key.labels(),
        annotations,
        trace_id: None,
        identity: Default::default(),
    }
}
