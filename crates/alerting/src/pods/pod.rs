//! What a pod tells about itself: its workload, its app, and whether (and why) it is failing. Pure functions of the
//! Pod object, the configuration and the time, so every rule is tested on real `kubectl get pod -o json` output.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::config::{KubernetesConfig, matches_pattern};
use crate::model::Severity;

/// The reason of a pod that has been Pending too long, unless the scheduler says `Unschedulable`.
pub const PENDING: &str = "Pending";
/// The reason of a pod the scheduler cannot place.
pub const UNSCHEDULABLE: &str = "Unschedulable";
/// The reason of a Running pod that has not been Ready for too long.
pub const NOT_READY: &str = "NotReady";
/// The reason of a container restarted too often within the window.
pub const RESTARTS: &str = "Restarts";

/// The workload a pod belongs to: what an alert is about, so that replicas of one workload share one alert.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Workload {
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `Job`, `ReplicaSet`, ... or `Pod` when the pod has no owner.
    pub kind: String,
    /// Its name.
    pub name: String,
}

/// One reason a pod is failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Short reason: a waiting or termination reason (`CrashLoopBackOff`, `OOMKilled`), a phase (`Failed`),
    /// [`PENDING`], [`UNSCHEDULABLE`], [`NOT_READY`] or [`RESTARTS`].
    pub reason: String,
    /// The container concerned, for container-level reasons.
    pub container: Option<String>,
    /// What happened, as a clause a person reads: `container kafka is waiting in CrashLoopBackOff (back-off 5m0s
    /// restarting failed container)`.
    pub detail: String,
    /// Exit code of the termination concerned, if any.
    pub exit_code: Option<i32>,
}

/// Converts a Kubernetes timestamp.
pub fn time(time: &Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(time.0.as_millisecond())
}

fn elapsed(now: DateTime<Utc>, since: Option<&Time>) -> Option<Duration> {
    since
        .and_then(time)
        .and_then(|since| (now - since).to_std().ok())
}

/// The pod's namespace (empty when absent).
pub fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or_default()
}

/// The pod's name (empty when absent).
pub fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

/// The pod's labels.
pub fn labels(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata.labels.clone().unwrap_or_default()
}

/// The workload the pod belongs to, derived from its owner reference alone (no extra API call, so no extra RBAC):
/// a ReplicaSet whose name is a Deployment's name plus the pod's `pod-template-hash` is that Deployment; any other
/// controller is itself; a pod without an owner is its own workload.
pub fn workload(pod: &Pod) -> Workload {
    let owners = pod.metadata.owner_references.as_deref().unwrap_or_default();
    let owner = owners
        .iter()
        .find(|owner| owner.controller == Some(true))
        .or_else(|| owners.first());
    let Some(owner) = owner else {
        return Workload {
            kind: "Pod".to_owned(),
            name: name(pod).to_owned(),
        };
    };
    if owner.kind == "ReplicaSet"
        && let Some(hash) = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get("pod-template-hash"))
        && let Some(deployment) = owner.name.strip_suffix(&format!("-{hash}"))
        && !deployment.is_empty()
    {
        return Workload {
            kind: "Deployment".to_owned(),
            name: deployment.to_owned(),
        };
    }
    Workload {
        kind: owner.kind.clone(),
        name: owner.name.clone(),
    }
}

/// The pod's app: its `app` label, else its `app.kubernetes.io/name` label, else its workload's name.
pub fn app(pod: &Pod, workload: &Workload) -> String {
    let labels = pod.metadata.labels.as_ref();
    labels
        .and_then(|labels| {
            labels
                .get("app")
                .or_else(|| labels.get("app.kubernetes.io/name"))
        })
        .cloned()
        .unwrap_or_else(|| workload.name.clone())
}

/// The severity of the pod's alerts: the first rule of `config.severity_rules` that matches, else the default.
pub fn severity(pod: &Pod, workload: &Workload, config: &KubernetesConfig) -> Severity {
    let app = app(pod, workload);
    let labels = labels(pod);
    let namespace = namespace(pod);
    config
        .severity_rules
        .iter()
        .find(|rule| {
            (rule.namespaces.is_empty() || rule.namespaces.iter().any(|n| n == namespace))
                && (rule.apps.is_empty() || rule.apps.iter().any(|p| matches_pattern(p, &app)))
                && rule
                    .labels
                    .iter()
                    .all(|(key, value)| labels.get(key) == Some(value))
                && (rule.names.is_empty()
                    || rule
                        .names
                        .iter()
                        .any(|p| matches_pattern(p, &workload.name)))
        })
        .map_or(config.default_severity, |rule| rule.severity)
}

/// Every container status of the pod: init containers first, then the others.
pub fn containers(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    let init = status
        .and_then(|s| s.init_container_statuses.as_deref())
        .unwrap_or_default();
    let main = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    init.iter().chain(main)
}

fn last_exit(container: &ContainerStatus) -> String {
    match container
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
    {
        Some(terminated) => format!(
            "; last exit: {} (exit code {})",
            terminated.reason.as_deref().unwrap_or("unknown reason"),
            terminated.exit_code
        ),
        None => String::new(),
    }
}

fn with_message(text: String, message: Option<&str>) -> String {
    match message.map(str::trim).filter(|m| !m.is_empty()) {
        Some(message) => format!("{text} ({})", crate::model::truncate(message, 300)),
        None => text,
    }
}

/// The failure of one container, if any, by precedence: a waiting reason, then a recent termination reason, then
/// too many restarts in the window. `restarts` is how many times it restarted within `config.restart_window`.
pub fn container_failure(
    pod: &Pod,
    container: &ContainerStatus,
    now: DateTime<Utc>,
    config: &KubernetesConfig,
    restarts: u32,
) -> Option<Failure> {
    let name = &container.name;
    let state = container.state.as_ref();
    if let Some(waiting) = state.and_then(|s| s.waiting.as_ref())
        && let Some(reason) = waiting.reason.as_deref()
        && config.waiting_reasons.iter().any(|r| r == reason)
    {
        let detail = with_message(
            format!("container {name} is waiting in {reason}"),
            waiting.message.as_deref(),
        );
        let exit_code = container
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code);
        return Some(Failure {
            reason: reason.to_owned(),
            container: Some(name.clone()),
            detail: format!(
                "{detail} after {} restarts{}",
                container.restart_count,
                last_exit(container)
            ),
            exit_code,
        });
    }
    let terminations = [
        state.and_then(|s| s.terminated.as_ref()),
        container
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref()),
    ];
    for terminated in terminations.into_iter().flatten() {
        let Some(reason) = terminated.reason.as_deref() else {
            continue;
        };
        let recent = elapsed(now, terminated.finished_at.as_ref())
            .is_some_and(|age| age <= config.restart_window);
        if recent && config.termination_reasons.iter().any(|r| r == reason) {
            let finished = terminated
                .finished_at
                .as_ref()
                .and_then(time)
                .map(|t| t.format("%H:%M:%S UTC").to_string())
                .unwrap_or_default();
            let detail = with_message(
                format!(
                    "container {name} was terminated with {reason} (exit code {}) at {finished}",
                    terminated.exit_code
                ),
                terminated.message.as_deref(),
            );
            return Some(Failure {
                reason: reason.to_owned(),
                container: Some(name.clone()),
                detail: format!("{detail}; {} restarts in all", container.restart_count),
                exit_code: Some(terminated.exit_code),
            });
        }
    }
    let threshold = config.restart_threshold_for(namespace(pod));
    if threshold > 0 && restarts > threshold {
        let exit_code = container
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code);
        return Some(Failure {
            reason: RESTARTS.to_owned(),
            container: Some(name.clone()),
            detail: format!(
                "container {name} restarted {restarts} times in the last {} (more than {threshold}){}",
                humantime_serde::re::humantime::format_duration(config.restart_window),
                last_exit(container)
            ),
            exit_code,
        });
    }
    None
}

/// Why the pod is failing at `now`, if it is. `restarts` gives, per container name, its restarts within the window.
///
/// Precedence keeps one problem from raising several alerts: a failed phase is reported alone; otherwise each
/// container reports its own failure (see [`container_failure`]); only when no container fails are Pending and not
/// Ready too long reported.
pub fn failures(
    pod: &Pod,
    now: DateTime<Utc>,
    config: &KubernetesConfig,
    restarts: &dyn Fn(&str) -> u32,
) -> Vec<Failure> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    if pod.metadata.deletion_timestamp.is_some() {
        // Being deleted: whatever it does now is its shutdown, and a replacement comes or nothing is wanted.
        return Vec::new();
    }
    // No phase yet (a pod just created) is not the `Unknown` phase.
    let phase = status.phase.as_deref().unwrap_or_default();
    if config.failed_phases.iter().any(|p| p == phase) {
        let mut detail = format!("the pod is {phase}");
        if let Some(reason) = status.reason.as_deref() {
            detail.push_str(&format!(": {reason}"));
        }
        let detail = with_message(detail, status.message.as_deref());
        let exits: Vec<String> = containers(pod)
            .filter_map(|c| {
                let t = c.state.as_ref()?.terminated.as_ref()?;
                (t.exit_code != 0).then(|| {
                    format!(
                        "{} exited with {} (exit code {})",
                        c.name,
                        t.reason.as_deref().unwrap_or("an error"),
                        t.exit_code
                    )
                })
            })
            .collect();
        let detail = if exits.is_empty() {
            detail
        } else {
            format!("{detail}; {}", exits.join(", "))
        };
        return vec![Failure {
            reason: phase.to_owned(),
            container: None,
            detail,
            exit_code: None,
        }];
    }
    let found: Vec<Failure> = containers(pod)
        .filter_map(|c| container_failure(pod, c, now, config, restarts(&c.name)))
        .collect();
    if !found.is_empty() {
        return found;
    }
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let condition = |kind: &str| conditions.iter().find(|c| c.type_ == kind);
    if phase == "Pending" && !config.pending_after.is_zero() {
        let age = elapsed(now, pod.metadata.creation_timestamp.as_ref());
        if age.is_some_and(|age| age > config.pending_after) {
            let scheduled = condition("PodScheduled");
            let unschedulable = scheduled
                .is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some(UNSCHEDULABLE));
            let (reason, detail) = if unschedulable {
                (
                    UNSCHEDULABLE,
                    with_message(
                        "the scheduler cannot place the pod".to_owned(),
                        scheduled.and_then(|c| c.message.as_deref()),
                    ),
                )
            } else {
                (
                    PENDING,
                    format!(
                        "the pod has been Pending for more than {}",
                        humantime_serde::re::humantime::format_duration(config.pending_after)
                    ),
                )
            };
            return vec![Failure {
                reason: reason.to_owned(),
                container: None,
                detail,
                exit_code: None,
            }];
        }
    }
    if phase == "Running" && !config.not_ready_after.is_zero() {
        let ready = condition("Ready");
        if let Some(ready) = ready
            && ready.status != "True"
            && elapsed(now, ready.last_transition_time.as_ref())
                .is_some_and(|age| age > config.not_ready_after)
        {
            let waiting: Vec<&str> = containers(pod)
                .filter(|c| !c.ready)
                .map(|c| c.name.as_str())
                .collect();
            let detail = with_message(
                format!(
                    "the pod is Running but not Ready for more than {} (containers not ready: {})",
                    humantime_serde::re::humantime::format_duration(config.not_ready_after),
                    waiting.join(", ")
                ),
                ready.message.as_deref(),
            );
            return vec![Failure {
                reason: NOT_READY.to_owned(),
                container: None,
                detail,
                exit_code: None,
            }];
        }
    }
    Vec::new()
}

/// Restart counts of one container as observed over time, enough to tell how many restarts fell within a window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RestartHistory {
    /// (when observed, restart count then), oldest first; at most one observation older than the window is kept.
    observations: Vec<(DateTime<Utc>, i32)>,
}

impl RestartHistory {
    /// Records the container's restart count as seen at `at`.
    pub fn record(&mut self, at: DateTime<Utc>, count: i32) {
        if self.observations.last().is_some_and(|(_, c)| *c == count) {
            return;
        }
        // A lower count is a new container status (the pod was recreated under the same name): start over.
        if self.observations.last().is_some_and(|(_, c)| *c > count) {
            self.observations.clear();
        }
        self.observations.push((at, count));
    }

    /// Restarts within `window` before `now`: the current count minus the count last seen before the window
    /// began. Restarts before the first observation are not known, and not counted: a pod first seen with many
    /// old restarts is not failing for them.
    pub fn within(&mut self, now: DateTime<Utc>, window: Duration) -> u32 {
        let Ok(window) = chrono::Duration::from_std(window) else {
            return 0;
        };
        let start = now - window;
        let before = self
            .observations
            .iter()
            .rposition(|(at, _)| *at <= start)
            .unwrap_or(0);
        self.observations.drain(..before);
        let (Some((_, first)), Some((_, last))) =
            (self.observations.first(), self.observations.last())
        else {
            return 0;
        };
        u32::try_from(last - first).unwrap_or(0)
    }
}
