//! `alerting.kubernetes`: which pods are watched, when a pod counts as failing, how severe its alert is, and how
//! replicas share the watching.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use gomon_runtime::config::KeyError;
use serde::{Deserialize, Serialize};

use crate::model::Severity;

/// The pod watcher's configuration. Off by default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Watch pods and raise alerts for failing ones.
    pub enabled: bool,
    /// Kubeconfig file to use. Unset: the in-cluster service account, else `KUBECONFIG`, else `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig to use. Unset: its current context.
    pub context: Option<String>,
    /// Namespaces watched (one watch each), unless `all_namespaces` is set.
    pub namespaces: Vec<String>,
    /// Watch every namespace with one watch instead of `namespaces`.
    pub all_namespaces: bool,
    /// Only pods matching this label selector (`app in (kafka,postgres),tier!=test`).
    pub label_selector: Option<String>,
    /// Reasons of a waiting container that make its pod failing. Empty: the rule is off.
    pub waiting_reasons: Vec<String>,
    /// Reasons of a container's last termination that make its pod failing, when that termination ended within
    /// `restart_window`. Empty: the rule is off.
    pub termination_reasons: Vec<String>,
    /// Pod phases that are failing in themselves. Empty: the rule is off.
    pub failed_phases: Vec<String>,
    /// A pod Pending for longer is failing. `0s`: the rule is off.
    #[serde(with = "humantime_serde")]
    pub pending_after: Duration,
    /// A Running pod that is not Ready for longer is failing. `0s`: the rule is off.
    #[serde(with = "humantime_serde")]
    pub not_ready_after: Duration,
    /// Restarts are counted within this window; also how recent a termination must be to count.
    #[serde(with = "humantime_serde")]
    pub restart_window: Duration,
    /// A container restarted more than this many times within `restart_window` is failing, in namespaces
    /// `restart_thresholds` does not name. `0`: the rule is off (for those namespaces).
    pub restart_threshold: u32,
    /// Restart thresholds per namespace, overriding `restart_threshold`.
    pub restart_thresholds: BTreeMap<String, u32>,
    /// An alert is resolved once its condition has been gone for this long.
    #[serde(with = "humantime_serde")]
    pub stabilization_window: Duration,
    /// How often time-based conditions (Pending, not Ready, restart windows, stabilisation) are re-evaluated.
    #[serde(with = "humantime_serde")]
    pub evaluation_interval: Duration,
    /// First wait after an API error; doubles (with jitter) up to `max_backoff`. Also read as `backoff_initial`.
    #[serde(with = "humantime_serde", alias = "backoff_initial")]
    pub min_backoff: Duration,
    /// Longest wait between attempts while the API server fails. Also read as `backoff_max`.
    #[serde(with = "humantime_serde", alias = "backoff_max")]
    pub max_backoff: Duration,
    /// A namespace's watch that receives nothing (no event, not even a bookmark) for this long is dropped, and
    /// the namespace listed and watched again. Keep it well above the API server's bookmark interval (about a
    /// minute).
    #[serde(with = "humantime_serde")]
    pub watch_idle_timeout: Duration,
    /// Severity rules, in order: the first that matches a pod decides.
    pub severity_rules: Vec<SeverityRule>,
    /// Severity when no rule matches.
    pub default_severity: Severity,
    /// One replica watches at a time, holding a Lease.
    pub leader_election: LeaderElectionConfig,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Self {
            enabled: false,
            kubeconfig: None,
            context: None,
            namespaces: strings(&["monitoring", "kube-system", "ingress-nginx"]),
            all_namespaces: false,
            label_selector: None,
            waiting_reasons: strings(&[
                "CrashLoopBackOff",
                "ImagePullBackOff",
                "ErrImagePull",
                "CreateContainerConfigError",
                "InvalidImageName",
                "RunContainerError",
            ]),
            termination_reasons: strings(&["OOMKilled"]),
            failed_phases: strings(&["Failed", "Unknown"]),
            pending_after: Duration::from_secs(300),
            not_ready_after: Duration::from_secs(300),
            restart_window: Duration::from_secs(900),
            restart_threshold: 5,
            restart_thresholds: BTreeMap::from([
                ("kube-system".to_owned(), 10),
                ("monitoring".to_owned(), 3),
                ("ingress-nginx".to_owned(), 3),
            ]),
            stabilization_window: Duration::from_secs(120),
            evaluation_interval: Duration::from_secs(10),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            watch_idle_timeout: Duration::from_secs(300),
            severity_rules: SeverityRule::seed(),
            default_severity: Severity::P3,
            leader_election: LeaderElectionConfig::default(),
        }
    }
}

/// One severity rule. Every condition given must hold; a rule with no condition matches every pod.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityRule {
    /// The pod's namespace is one of these.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// The pod's app is one of these: its `app` label, else its `app.kubernetes.io/name` label, else its
    /// workload's name. A trailing `*` matches any suffix (`kafka*`).
    #[serde(default)]
    pub apps: Vec<String>,
    /// The pod carries every one of these labels with these values.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The workload's name (or the pod's, when it has no owner) is one of these; a trailing `*` matches any suffix.
    #[serde(default)]
    pub names: Vec<String>,
    /// The alert's severity.
    pub severity: Severity,
}

impl SeverityRule {
    /// The seed's rules: Kafka and PostgreSQL P1, the aggregator P2, the agent P3.
    pub fn seed() -> Vec<SeverityRule> {
        let rule = |apps: &[&str], severity| SeverityRule {
            namespaces: Vec::new(),
            apps: apps.iter().map(|s| (*s).to_owned()).collect(),
            labels: BTreeMap::new(),
            names: Vec::new(),
            severity,
        };
        vec![
            rule(&["kafka", "postgres", "postgresql"], Severity::P1),
            rule(&["aggregator", "gomon-aggregator"], Severity::P2),
            rule(&["agent", "gomon-agent"], Severity::P3),
        ]
    }
}

/// The Lease that lets one replica watch at a time.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaderElectionConfig {
    /// Take the Lease before watching. Off: every replica watches (duplicates are still collapsed by the store).
    pub enabled: bool,
    /// Name of the Lease (`coordination.k8s.io/v1`).
    pub lease_name: String,
    /// Namespace of the Lease. Unset: the service account's namespace, else `monitoring`.
    pub lease_namespace: Option<String>,
    /// Who this replica is in the Lease. Unset: the `POD_NAME` variable, else `HOSTNAME`, else a random id.
    pub identity: Option<String>,
    /// How long a Lease not renewed stays with its holder before another replica takes it.
    #[serde(with = "humantime_serde")]
    pub lease_duration: Duration,
    /// How often the holder renews the Lease, and how often a standby replica tries to take it.
    #[serde(with = "humantime_serde")]
    pub renew_interval: Duration,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            lease_name: "gomon-alerting-kube-watcher".to_owned(),
            lease_namespace: None,
            identity: None,
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
        }
    }
}

impl KubernetesConfig {
    /// The restart threshold of `namespace`.
    pub fn restart_threshold_for(&self, namespace: &str) -> u32 {
        self.restart_thresholds
            .get(namespace)
            .copied()
            .unwrap_or(self.restart_threshold)
    }

    /// Checks values types alone cannot; the message names the key. Checked whether or not the watcher is enabled.
    pub fn check(&self) -> Result<(), KeyError> {
        let positive = [
            ("restart_window", self.restart_window),
            ("stabilization_window", self.stabilization_window),
            ("evaluation_interval", self.evaluation_interval),
            ("min_backoff", self.min_backoff),
            ("max_backoff", self.max_backoff),
            ("watch_idle_timeout", self.watch_idle_timeout),
            (
                "leader_election.lease_duration",
                self.leader_election.lease_duration,
            ),
            (
                "leader_election.renew_interval",
                self.leader_election.renew_interval,
            ),
        ];
        for (name, value) in positive {
            if value < Duration::from_millis(1) {
                return Err(KeyError::new(
                    name,
                    format!("must be at least 1ms, not {value:?}"),
                ));
            }
        }
        if self.leader_election.renew_interval >= self.leader_election.lease_duration {
            return Err(KeyError::new(
                "leader_election.renew_interval",
                format!(
                    "must be shorter than leader_election.lease_duration ({:?}), not {:?}",
                    self.leader_election.lease_duration, self.leader_election.renew_interval
                ),
            ));
        }
        if !self.all_namespaces {
            if self.namespaces.is_empty() {
                return Err(KeyError::new(
                    "namespaces",
                    "list at least one namespace, or set all_namespaces",
                ));
            }
            if let Some(index) = self.namespaces.iter().position(|n| n.trim().is_empty()) {
                return Err(KeyError::new(
                    format!("namespaces[{index}]"),
                    "must not be empty",
                ));
            }
        }
        if self.leader_election.lease_name.trim().is_empty() {
            return Err(KeyError::new(
                "leader_election.lease_name",
                "must not be empty",
            ));
        }
        if let Some(selector) = &self.label_selector
            && selector.trim().is_empty()
        {
            return Err(KeyError::new(
                "label_selector",
                "must not be empty when set",
            ));
        }
        Ok(())
    }
}

/// Whether `pattern` (exact, or a prefix when it ends with `*`) matches `value`.
pub(crate) fn matches_pattern(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seeds_and_valid() {
        let config = KubernetesConfig::default();
        assert!(!config.enabled);
        assert!(config.check().is_ok());
        assert_eq!(config.restart_threshold_for("kube-system"), 10);
        assert_eq!(config.restart_threshold_for("monitoring"), 3);
        assert_eq!(config.restart_threshold_for("ingress-nginx"), 3);
        assert_eq!(config.restart_threshold_for("default"), 5);
    }

    #[test]
    fn check_names_the_key() {
        let mut config = KubernetesConfig::default();
        config.leader_election.renew_interval = Duration::from_secs(20);
        let error = config
            .check()
            .map_err(|error| error.within("alerting.kubernetes"))
            .expect_err("renew too long")
            .to_string();
        assert!(
            error.contains("alerting.kubernetes.leader_election.renew_interval"),
            "{error}"
        );
        let mut config = KubernetesConfig::default();
        config.namespaces.clear();
        let error = config
            .check()
            .map_err(|error| error.within("alerting.kubernetes"))
            .expect_err("no namespace")
            .to_string();
        assert!(error.contains("alerting.kubernetes.namespaces"), "{error}");
        config.all_namespaces = true;
        assert!(config.check().is_ok());
        config.stabilization_window = Duration::ZERO;
        let error = config
            .check()
            .map_err(|error| error.within("alerting.kubernetes"))
            .expect_err("zero window")
            .to_string();
        assert!(
            error.contains("alerting.kubernetes.stabilization_window"),
            "{error}"
        );
        let config = KubernetesConfig {
            watch_idle_timeout: Duration::ZERO,
            ..KubernetesConfig::default()
        };
        let error = config
            .check()
            .map_err(|error| error.within("alerting.kubernetes"))
            .expect_err("zero idle timeout")
            .to_string();
        assert!(
            error.contains("alerting.kubernetes.watch_idle_timeout"),
            "{error}"
        );
    }

    #[test]
    fn the_documented_example_parses_and_unknown_keys_are_refused() {
        let yaml = "enabled: true\nnamespaces: [monitoring]\nrestart_thresholds: {monitoring: 2}\n\
                    stabilization_window: 1m\nseverity_rules:\n  - {namespaces: [monitoring], apps: ['kafka*'], \
                    labels: {tier: data}, severity: P1}\nleader_election: {lease_duration: 20s, renew_interval: 2s}\n";
        let config: KubernetesConfig = yaml_serde::from_str(yaml).expect("parses");
        assert!(config.enabled);
        assert_eq!(config.restart_threshold_for("monitoring"), 2);
        assert_eq!(config.stabilization_window, Duration::from_secs(60));
        assert_eq!(config.severity_rules.len(), 1);
        assert_eq!(
            config.leader_election.lease_name,
            "gomon-alerting-kube-watcher"
        );
        assert!(config.check().is_ok());
        let error = yaml_serde::from_str::<KubernetesConfig>("namespace: [monitoring]")
            .expect_err("misspelt key")
            .to_string();
        assert!(error.contains("unknown field `namespace`"), "{error}");
    }

    #[test]
    fn patterns_match_exactly_or_by_prefix() {
        assert!(matches_pattern("kafka", "kafka"));
        assert!(!matches_pattern("kafka", "kafka-connect"));
        assert!(matches_pattern("kafka*", "kafka-connect"));
        assert!(!matches_pattern("kafka*", "zookeeper"));
    }
}
