//! The Kubernetes pod watcher: its decisions as pure functions over real Pod JSON (`kubectl get pod -o json`
//! output, in `tests/fixtures/pods`), and the whole service end to end against a local server speaking the
//! Kubernetes list and watch protocol, on SQLite and PostgreSQL.

use crate::support;
use std::time::{Duration, Instant};

use crate::support::kube::{FakeKube, fixture};
use crate::support::{Backend, Database, Server};
use chrono::{DateTime, Utc};
use gomon_alerting::Config;
use gomon_alerting::model::Severity;
use gomon_alerting::pods::KubernetesConfig;
use gomon_alerting::pods::pod::{self, RestartHistory, Workload};
use gomon_alerting::pods::state::{AlertKey, Tracker};
use gomon_testkit::slack::FakeSlack;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------------------------
// Decisions, without a cluster.

fn pod(name: &str) -> Pod {
    serde_json::from_value(fixture(name)).unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test time")
        .with_timezone(&Utc)
}

/// The fixtures' "now": shortly after the failures they show.
fn fixture_now() -> DateTime<Utc> {
    at("2026-11-20T10:00:00Z")
}

fn reasons(pod: &Pod, now: DateTime<Utc>, config: &KubernetesConfig, restarts: u32) -> Vec<String> {
    pod::failures(pod, now, config, &|_| restarts)
        .into_iter()
        .map(|failure| failure.reason)
        .collect()
}

#[test]
fn crash_loop_back_off_is_failing_with_its_message_and_last_exit() {
    let kafka = pod("kafka-0-crashloop");
    let failures = pod::failures(&kafka, fixture_now(), &KubernetesConfig::default(), &|_| 0);
    assert_eq!(failures.len(), 1, "{failures:?}");
    let failure = &failures[0];
    assert_eq!(failure.reason, "CrashLoopBackOff");
    assert_eq!(failure.container.as_deref(), Some("kafka"));
    assert_eq!(failure.exit_code, Some(1));
    assert!(
        failure.detail.contains("back-off 5m0s"),
        "{}",
        failure.detail
    );
    assert!(
        failure
            .detail
            .contains("after 7 restarts; last exit: Error (exit code 1)"),
        "{}",
        failure.detail
    );
    let healthy = pod("kafka-0-healthy");
    assert!(reasons(&healthy, fixture_now(), &KubernetesConfig::default(), 0).is_empty());
}

#[test]
fn every_configured_waiting_reason_is_failing_and_others_are_not() {
    let config = KubernetesConfig::default();
    let image = pod("ingress-nginx-controller-imagepullbackoff");
    assert_eq!(
        reasons(&image, fixture_now(), &config, 0),
        ["ImagePullBackOff"]
    );
    let debug = pod("debug-shell-create-container-config-error");
    assert_eq!(
        reasons(&debug, fixture_now(), &config, 0),
        ["CreateContainerConfigError"]
    );
    for reason in ["ErrImagePull", "InvalidImageName", "RunContainerError"] {
        let mut json = fixture("ingress-nginx-controller-imagepullbackoff");
        json["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] = json!(reason);
        let pod: Pod = serde_json::from_value(json).expect("pod");
        assert_eq!(reasons(&pod, fixture_now(), &config, 0), [reason]);
    }
    // Creating a container is not a failure in itself (Pending too long is, below).
    let creating = pod("victoria-metrics-0-pending");
    assert!(reasons(&creating, at("2026-11-20T09:31:00Z"), &config, 0).is_empty());
    // The rule is configurable: without the reason in the list, the pod is not failing for it.
    let mut narrow = config.clone();
    narrow.waiting_reasons = vec!["CrashLoopBackOff".into()];
    assert!(reasons(&image, at("2026-11-20T08:02:00Z"), &narrow, 0).is_empty());
    // ... though it still counts once Pending for longer than `pending_after`.
    assert_eq!(reasons(&image, fixture_now(), &narrow, 0), ["Pending"]);
}

#[test]
fn an_init_container_in_crash_loop_is_failing() {
    let failures = pod::failures(
        &pod("alerting-init-crashloop"),
        fixture_now(),
        &KubernetesConfig::default(),
        &|_| 0,
    );
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].reason, "CrashLoopBackOff");
    assert_eq!(failures[0].container.as_deref(), Some("wait-for-db"));
    assert_eq!(failures[0].exit_code, Some(127));
}

#[test]
fn an_oom_kill_is_failing_while_it_is_recent() {
    let postgres = pod("postgres-0-oomkilled");
    let config = KubernetesConfig::default();
    // Killed at 09:50:01; the restart window is 15 minutes.
    let failures = pod::failures(&postgres, at("2026-11-20T09:55:00Z"), &config, &|_| 1);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].reason, "OOMKilled");
    assert_eq!(failures[0].exit_code, Some(137));
    assert!(
        failures[0].detail.contains("exit code 137"),
        "{}",
        failures[0].detail
    );
    assert!(reasons(&postgres, at("2026-11-20T10:06:00Z"), &config, 0).is_empty());
}

#[test]
fn an_error_exit_is_failing_when_configured_with_its_exit_code() {
    let aggregator = pod("aggregator-restarted");
    let now = at("2026-11-20T09:58:30Z");
    let mut config = KubernetesConfig::default();
    // By default one Error exit is left to the restart thresholds.
    assert!(reasons(&aggregator, now, &config, 1).is_empty());
    config.termination_reasons.push("Error".into());
    let failures = pod::failures(&aggregator, now, &config, &|_| 1);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].reason, "Error");
    assert_eq!(failures[0].exit_code, Some(1));
    assert!(
        failures[0].detail.contains("(exit code 1)"),
        "{}",
        failures[0].detail
    );
}

#[test]
fn failed_and_unknown_phases_are_failing_alone() {
    let config = KubernetesConfig::default();
    let job = pod("pg-backup-job-failed");
    let failures = pod::failures(&job, fixture_now(), &config, &|_| 0);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].reason, "Failed");
    assert!(
        failures[0]
            .detail
            .contains("backup exited with Error (exit code 2)"),
        "{}",
        failures[0].detail
    );
    let agent = pod("gomon-agent-unknown");
    let failures = pod::failures(&agent, fixture_now(), &config, &|_| 0);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].reason, "Unknown");
    assert!(
        failures[0].detail.contains("NodeLost"),
        "{}",
        failures[0].detail
    );
    // A pod just created, without a phase yet, is not `Unknown`.
    let mut json = fixture("aggregator-running");
    json["status"] = json!({});
    let fresh: Pod = serde_json::from_value(json).expect("pod");
    assert!(reasons(&fresh, fixture_now(), &config, 0).is_empty());
    let mut no_phases = config.clone();
    no_phases.failed_phases.clear();
    assert!(reasons(&job, fixture_now(), &no_phases, 0).is_empty());
}

#[test]
fn pending_too_long_is_failing_with_the_schedulers_reason() {
    let config = KubernetesConfig::default();
    let grafana = pod("grafana-pending-unschedulable");
    // Created at 09:30; the threshold is 5 minutes.
    assert!(reasons(&grafana, at("2026-11-20T09:34:00Z"), &config, 0).is_empty());
    let failures = pod::failures(&grafana, at("2026-11-20T09:36:00Z"), &config, &|_| 0);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].reason, "Unschedulable");
    assert!(
        failures[0].detail.contains("3 Insufficient memory"),
        "{}",
        failures[0].detail
    );
    let volume = pod("victoria-metrics-0-pending");
    assert_eq!(
        reasons(&volume, at("2026-11-20T09:36:00Z"), &config, 0),
        ["Pending"]
    );
    let mut off = config.clone();
    off.pending_after = Duration::ZERO;
    assert!(reasons(&grafana, fixture_now(), &off, 0).is_empty());
}

#[test]
fn running_but_not_ready_too_long_is_failing() {
    let config = KubernetesConfig::default();
    let coredns = pod("coredns-not-ready");
    // Not Ready since 09:30.
    assert!(reasons(&coredns, at("2026-11-20T09:33:00Z"), &config, 0).is_empty());
    let failures = pod::failures(&coredns, at("2026-11-20T09:36:00Z"), &config, &|_| 0);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].reason, "NotReady");
    assert!(
        failures[0].detail.contains("coredns"),
        "{}",
        failures[0].detail
    );
    // A crash-looping pod is not Ready either, but is reported for its crash loop only.
    assert_eq!(
        reasons(&pod("kafka-0-crashloop"), fixture_now(), &config, 0),
        ["CrashLoopBackOff"]
    );
}

#[test]
fn restarts_count_within_the_window_against_the_namespaces_threshold() {
    let config = KubernetesConfig::default();
    let aggregator = pod("aggregator-restarted");
    let now = at("2026-11-20T09:58:30Z");
    // monitoring: more than 3.
    assert!(reasons(&aggregator, now, &config, 3).is_empty());
    let failures = pod::failures(&aggregator, now, &config, &|_| 4);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].reason, "Restarts");
    assert!(
        failures[0].detail.contains(
            "restarted 4 times in the last 15m (more than 3); last exit: Error (exit code 1)"
        ),
        "{}",
        failures[0].detail
    );
    // kube-system: more than 10; other namespaces: more than 5.
    let mut json = fixture("aggregator-restarted");
    json["metadata"]["namespace"] = json!("kube-system");
    let system: Pod = serde_json::from_value(json.clone()).expect("pod");
    assert!(reasons(&system, now, &config, 10).is_empty());
    assert_eq!(reasons(&system, now, &config, 11), ["Restarts"]);
    json["metadata"]["namespace"] = json!("default");
    let other: Pod = serde_json::from_value(json).expect("pod");
    assert!(reasons(&other, now, &config, 5).is_empty());
    assert_eq!(reasons(&other, now, &config, 6), ["Restarts"]);
}

#[test]
fn restart_history_counts_only_restarts_inside_the_window() {
    let window = Duration::from_secs(15 * 60);
    let start = at("2026-11-20T09:00:00Z");
    let minutes = |m: i64| start + chrono::Duration::minutes(m);
    let mut history = RestartHistory::default();
    // First seen with 20 old restarts: none of them counts.
    history.record(start, 20);
    assert_eq!(history.within(minutes(1), window), 0);
    for (minute, count) in [(2, 21), (3, 22), (4, 23), (5, 24)] {
        history.record(minutes(minute), count);
    }
    assert_eq!(history.within(minutes(6), window), 4);
    // 15 minutes after the first of them, it falls out of the window.
    assert_eq!(
        history.within(minutes(17) + chrono::Duration::seconds(30), window),
        3
    );
    // Stable for long: nothing left in the window.
    assert_eq!(history.within(minutes(60), window), 0);
    // A lower count is a new pod with the same name: counting starts over.
    history.record(minutes(61), 0);
    history.record(minutes(62), 1);
    assert_eq!(history.within(minutes(63), window), 1);
}

#[test]
fn the_workload_is_the_owner_without_asking_the_api() {
    let deployment = Workload {
        kind: "Deployment".into(),
        name: "aggregator".into(),
    };
    assert_eq!(pod::workload(&pod("aggregator-running")), deployment);
    assert_eq!(
        pod::workload(&pod("kafka-0-crashloop")),
        Workload {
            kind: "StatefulSet".into(),
            name: "kafka".into()
        }
    );
    assert_eq!(
        pod::workload(&pod("gomon-agent-unknown")),
        Workload {
            kind: "DaemonSet".into(),
            name: "gomon-agent".into()
        }
    );
    assert_eq!(
        pod::workload(&pod("pg-backup-job-failed")),
        Workload {
            kind: "Job".into(),
            name: "pg-backup-28871040".into()
        }
    );
    assert_eq!(
        pod::workload(&pod("debug-shell-create-container-config-error")),
        Workload {
            kind: "Pod".into(),
            name: "debug-shell".into()
        }
    );
    assert_eq!(
        pod::workload(&pod("ingress-nginx-controller-imagepullbackoff")).name,
        "ingress-nginx-controller"
    );
}

#[test]
fn severity_follows_the_seeds_rules_by_app_label_then_name() {
    let config = KubernetesConfig::default();
    let severity = |name: &str| {
        let pod = pod(name);
        pod::severity(&pod, &pod::workload(&pod), &config)
    };
    assert_eq!(severity("kafka-0-crashloop"), Severity::P1);
    // No `app` label: `app.kubernetes.io/name: postgresql`.
    assert_eq!(severity("postgres-0-oomkilled"), Severity::P1);
    assert_eq!(severity("aggregator-running"), Severity::P2);
    assert_eq!(severity("gomon-agent-unknown"), Severity::P3);
    assert_eq!(severity("coredns-not-ready"), Severity::P3);
    // No app label at all: the workload's name decides.
    let mut json = fixture("aggregator-running");
    json["metadata"]["labels"] = json!({"pod-template-hash": "7d9f8c6b5d"});
    let unlabelled: Pod = serde_json::from_value(json).expect("pod");
    assert_eq!(
        pod::severity(&unlabelled, &pod::workload(&unlabelled), &config),
        Severity::P2
    );
    // Rules are ordered and can match namespaces and labels.
    let mut custom = config.clone();
    custom.severity_rules.insert(
        0,
        yaml_serde::from_str(
            "{namespaces: [kube-system], labels: {k8s-app: kube-dns}, severity: P1}",
        )
        .expect("rule"),
    );
    let coredns = pod("coredns-not-ready");
    assert_eq!(
        pod::severity(&coredns, &pod::workload(&coredns), &custom),
        Severity::P1
    );
}

#[test]
fn replicas_of_one_workload_share_one_alert_and_recovery_waits_for_the_window() {
    let config = KubernetesConfig {
        stabilization_window: Duration::from_secs(120),
        ..KubernetesConfig::default()
    };
    let mut tracker = Tracker::new(config);
    let now = fixture_now();
    let crashing = |name: &str, uid: &str| {
        let mut json = fixture("aggregator-running");
        json["metadata"]["name"] = json!(name);
        json["metadata"]["uid"] = json!(uid);
        json["status"]["containerStatuses"][0]["state"] =
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}});
        serde_json::from_value::<Pod>(json).expect("pod")
    };
    tracker.list_started(0);
    for (name, uid) in [
        ("aggregator-7d9f8c6b5d-a", "a"),
        ("aggregator-7d9f8c6b5d-b", "b"),
        ("aggregator-7d9f8c6b5d-c", "c"),
    ] {
        tracker.listed(0, crashing(name, uid));
    }
    tracker.list_done(0, now);
    let plan = tracker.evaluate(now);
    assert_eq!(plan.create.len(), 1, "{:?}", plan.create);
    let (key, alert) = &plan.create[0];
    assert_eq!(key.workload.name, "aggregator");
    assert_eq!(alert.severity, Severity::P2);
    assert_eq!(
        alert.annotations.get("pods").map(String::as_str),
        Some("aggregator-7d9f8c6b5d-a,aggregator-7d9f8c6b5d-b,aggregator-7d9f8c6b5d-c")
    );
    assert_eq!(
        plan.failing_pods
            .get(&("monitoring".to_owned(), "CrashLoopBackOff".to_owned())),
        Some(&3)
    );
    let id = uuid::Uuid::new_v4();
    tracker.opened(key, id);
    assert!(tracker.evaluate(now).create.is_empty(), "opened once");
    // Replaced by healthy pods: resolved only once the window has passed.
    let mut healthy = fixture("aggregator-running");
    healthy["metadata"]["uid"] = json!("d");
    tracker.list_started(0);
    tracker.listed(0, serde_json::from_value(healthy).expect("pod"));
    tracker.list_done(0, now + chrono::Duration::seconds(10));
    assert!(
        tracker
            .evaluate(now + chrono::Duration::seconds(60))
            .resolve
            .is_empty()
    );
    let plan = tracker.evaluate(now + chrono::Duration::seconds(121));
    assert_eq!(plan.resolve.len(), 1);
    assert_eq!(plan.resolve[0].1, id);
    assert!(
        plan.resolve[0].2.contains("its pods are healthy"),
        "{}",
        plan.resolve[0].2
    );
    let key = plan.resolve[0].0.clone();
    tracker.resolved(&key);
    assert!(
        tracker
            .evaluate(now + chrono::Duration::seconds(200))
            .resolve
            .is_empty()
    );
}

#[test]
fn a_crash_loop_keeps_its_first_reason_while_it_lasts() {
    let mut config = KubernetesConfig::default();
    config.restart_thresholds.clear();
    config.restart_threshold = 1;
    let mut tracker = Tracker::new(config);
    let now = fixture_now();
    let kafka = |waiting: bool, restarts: i32| {
        let mut json = fixture("kafka-0-crashloop");
        json["status"]["containerStatuses"][0]["restartCount"] = json!(restarts);
        if !waiting {
            json["status"]["containerStatuses"][0]["state"] =
                json!({"running": {"startedAt": "2026-11-20T09:59:58Z"}});
        }
        serde_json::from_value::<Pod>(json).expect("pod")
    };
    tracker.apply(0, kafka(true, 7), now);
    let plan = tracker.evaluate(now);
    assert_eq!(plan.create.len(), 1);
    assert_eq!(plan.create[0].0.reason, "CrashLoopBackOff");
    let key: AlertKey = plan.create[0].0.clone();
    tracker.opened(&key, uuid::Uuid::new_v4());
    // Running for a moment between crashes, with restarts over the threshold: still the same episode.
    let later = now + chrono::Duration::seconds(30);
    tracker.apply(0, kafka(false, 9), later);
    let plan = tracker.evaluate(later);
    assert!(plan.create.is_empty(), "{:?}", plan.create);
    assert!(plan.resolve.is_empty());
}

// ---------------------------------------------------------------------------------------------------------------
// End to end: the service (`gomon_alerting::run`) against the fake API server.

on_both_stores!(
    kafka_crash_loop_opens_one_p1_alert_and_recovery_resolves_it,
    three_crashing_replicas_of_a_deployment_raise_one_alert,
    aggregator_restarting_four_times_in_monitoring_is_p2,
    stale_alerts_are_reconciled_at_start_up,
    a_dropped_watch_resumes_and_a_410_relists_without_duplicates,
    an_unreachable_api_server_is_retried_and_reported,
);

/// Window after which recovered alerts are resolved in these tests.
const WINDOW: Duration = Duration::from_millis(800);
/// How often the watcher re-evaluates in these tests.
const EVALUATION: Duration = Duration::from_millis(50);

struct Cluster {
    database: Database,
    kube: FakeKube,
    slack: FakeSlack,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn new(backend: Backend) -> Cluster {
        Cluster {
            database: Database::new(backend).await,
            kube: FakeKube::start().await,
            slack: FakeSlack::start().await,
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    fn config(&self) -> Config {
        let mut config = Config::default();
        config.database = self.database.config.clone();
        config.slack.webhook_url = Some(self.slack.webhook_url.clone().into());
        config.outbox.poll_interval = Duration::from_millis(50);
        let kubernetes = &mut config.kubernetes;
        kubernetes.enabled = true;
        kubernetes.kubeconfig = Some(self.kube.kubeconfig(self.dir.path()));
        kubernetes.stabilization_window = WINDOW;
        kubernetes.evaluation_interval = EVALUATION;
        kubernetes.min_backoff = Duration::from_millis(50);
        kubernetes.max_backoff = Duration::from_millis(200);
        kubernetes.leader_election.lease_duration = Duration::from_secs(2);
        kubernetes.leader_election.renew_interval = Duration::from_millis(200);
        config
    }

    async fn start(&self) -> Server {
        Server::start_service(self.config()).await
    }
}

/// Polls `check` until it holds, for at most `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

const LIMIT: Duration = Duration::from_secs(15);

async fn kubernetes_alerts(server: &Server) -> Vec<Value> {
    let (status, body) = server.get("/api/v1/alerts?source=kubernetes").await;
    assert_eq!(status, 200, "{body}");
    body["alerts"].as_array().cloned().unwrap_or_default()
}

async fn watcher_state(server: &Server) -> Value {
    let (_, body) = server.get("/health/ready").await;
    body["kubernetes"].clone()
}

async fn wait_watching(server: &Server, pods: u64) {
    eventually(LIMIT, "the watcher to watch", || async {
        let state = watcher_state(server).await;
        state["state"] == "watching" && state["pods"].as_u64() == Some(pods)
    })
    .await;
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

fn crash_looping(name: &str, uid: &str) -> Value {
    let mut pod = fixture("aggregator-running");
    pod["metadata"]["name"] = json!(name);
    pod["metadata"]["uid"] = json!(uid);
    let status = &mut pod["status"]["containerStatuses"][0];
    status["ready"] = json!(false);
    status["restartCount"] = json!(3);
    status["state"] = json!({"waiting": {"reason": "CrashLoopBackOff",
        "message": format!("back-off 40s restarting failed container=aggregator pod={name}_monitoring({uid})")}});
    status["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error",
        "startedAt": "2026-11-20T09:57:40Z", "finishedAt": "2026-11-20T09:57:51Z"}});
    pod
}

async fn kafka_crash_loop_opens_one_p1_alert_and_recovery_resolves_it(backend: Backend) {
    let cluster = Cluster::new(backend).await;
    cluster.kube.put(fixture("kafka-0-crashloop"));
    let server = cluster.start().await;
    eventually(LIMIT, "the kafka alert", || async {
        kubernetes_alerts(&server).await.len() == 1
    })
    .await;
    let alert = kubernetes_alerts(&server).await.remove(0);
    assert_eq!(alert["severity"], "P1");
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["namespace"], "monitoring");
    assert_eq!(
        alert["title"],
        "StatefulSet kafka in monitoring: CrashLoopBackOff"
    );
    assert_eq!(
        alert["labels"],
        json!({"namespace": "monitoring", "workload_kind": "StatefulSet", "workload": "kafka",
            "reason": "CrashLoopBackOff"})
    );
    assert_eq!(
        alert["annotations"],
        json!({"pod": "kafka-0", "node": "worker-2", "container": "kafka", "restart_count": "7",
            "exit_code": "1"})
    );
    let description = alert["description"].as_str().unwrap_or_default();
    assert!(
        description.starts_with(
            "Pod kafka-0 of StatefulSet kafka in namespace monitoring (node worker-2): container kafka is waiting \
             in CrashLoopBackOff (back-off 5m0s"
        ),
        "{description}"
    );
    let id = alert["id"].as_str().unwrap_or_default().to_owned();
    let (_, actions) = server.get(&format!("/api/v1/alerts/{id}/actions")).await;
    assert_eq!(actions["actions"][0]["actor"], "kubernetes-watcher");

    let metrics = server.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "alerting_kube_pods_failing{namespace=\"monitoring\",reason=\"CrashLoopBackOff\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "alerting_kube_watch_events_total{event=\"listed\"}"
        )
        .is_some_and(|n| n >= 1.0)
    );
    let state = watcher_state(&server).await;
    assert_eq!(state["state"], "watching", "{state}");
    assert_eq!(state["leader"], true, "{state}");
    let lease = cluster
        .kube
        .lease("monitoring", "gomon-alerting-kube-watcher")
        .expect("the watcher took the Lease");
    assert!(lease["spec"]["holderIdentity"].is_string(), "{lease}");

    let recovered_at = Utc::now();
    cluster.kube.put(fixture("kafka-0-healthy"));
    eventually(LIMIT, "the kafka alert to be resolved", || async {
        server.get(&format!("/api/v1/alerts/{id}")).await.1["status"] == "resolved"
    })
    .await;
    let (_, resolved) = server.get(&format!("/api/v1/alerts/{id}")).await;
    let resolved_at: DateTime<Utc> =
        serde_json::from_value(resolved["resolved_at"].clone()).expect("resolved_at");
    let earliest = recovered_at + chrono::Duration::from_std(WINDOW - EVALUATION).expect("window");
    assert!(
        resolved_at >= earliest,
        "resolved at {resolved_at}, before the window ended ({earliest})"
    );
    let (_, actions) = server.get(&format!("/api/v1/alerts/{id}/actions")).await;
    let last = &actions["actions"][1];
    assert_eq!(last["action"], "resolved");
    assert_eq!(last["actor"], "kubernetes-watcher");
    let note = last["details"]["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("No pod of StatefulSet kafka has failed with CrashLoopBackOff")
            && note.contains("healthy"),
        "{note}"
    );
    // Notified like any other alert: firing, then resolved.
    eventually(LIMIT, "two Slack messages", || async {
        cluster.slack.accepted().len() == 2
    })
    .await;
    let messages = cluster.slack.accepted();
    assert!(
        messages[0].text.contains("[P1] FIRING"),
        "{}",
        messages[0].text
    );
    assert!(
        messages[1].text.contains("RESOLVED by kubernetes-watcher"),
        "{}",
        messages[1].text
    );
    eventually(LIMIT, "the failing gauge to clear", || async {
        !server
            .metrics()
            .await
            .contains("alerting_kube_pods_failing{")
    })
    .await;
    assert_eq!(kubernetes_alerts(&server).await.len(), 1, "no second alert");
    server.stop().await;
}

async fn three_crashing_replicas_of_a_deployment_raise_one_alert(backend: Backend) {
    let cluster = Cluster::new(backend).await;
    for (name, uid) in [
        (
            "aggregator-7d9f8c6b5d-x2k4p",
            "11111111-0000-4000-8000-000000000001",
        ),
        (
            "aggregator-7d9f8c6b5d-m9v7q",
            "11111111-0000-4000-8000-000000000002",
        ),
    ] {
        cluster.kube.put(crash_looping(name, uid));
    }
    let server = cluster.start().await;
    eventually(LIMIT, "the aggregator alert", || async {
        kubernetes_alerts(&server).await.len() == 1
    })
    .await;
    // A third replica crashes after the alert is open.
    cluster.kube.put(crash_looping(
        "aggregator-7d9f8c6b5d-b5n3c",
        "11111111-0000-4000-8000-000000000003",
    ));
    eventually(LIMIT, "three failing pods counted", || async {
        metric(
            &server.metrics().await,
            "alerting_kube_pods_failing{namespace=\"monitoring\",reason=\"CrashLoopBackOff\"}",
        ) == Some(3.0)
    })
    .await;
    let alerts = kubernetes_alerts(&server).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert["severity"], "P2");
    assert_eq!(
        alert["title"],
        "Deployment aggregator in monitoring: CrashLoopBackOff"
    );
    assert_eq!(alert["labels"]["workload"], "aggregator");
    assert_eq!(alert["labels"]["workload_kind"], "Deployment");
    assert_eq!(
        alert["annotations"]["pods"],
        "aggregator-7d9f8c6b5d-m9v7q,aggregator-7d9f8c6b5d-x2k4p"
    );
    let description = alert["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("2 pods of this Deployment fail the same way"),
        "{description}"
    );
    server.stop().await;
}

async fn aggregator_restarting_four_times_in_monitoring_is_p2(backend: Backend) {
    let cluster = Cluster::new(backend).await;
    let running = fixture("aggregator-running");
    cluster.kube.put(running.clone());
    let server = cluster.start().await;
    wait_watching(&server, 1).await;
    let mut restarted = fixture("aggregator-restarted");
    for count in 1..=4 {
        restarted["status"]["containerStatuses"][0]["restartCount"] = json!(count);
        cluster.kube.put(restarted.clone());
    }
    eventually(LIMIT, "the restarts alert", || async {
        kubernetes_alerts(&server).await.len() == 1
    })
    .await;
    let alert = kubernetes_alerts(&server).await.remove(0);
    assert_eq!(alert["severity"], "P2");
    assert_eq!(alert["labels"]["reason"], "Restarts");
    assert_eq!(alert["labels"]["workload"], "aggregator");
    assert_eq!(alert["annotations"]["restart_count"], "4");
    assert_eq!(alert["annotations"]["container"], "aggregator");
    let description = alert["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("container aggregator restarted 4 times in the last 15m (more than 3); last exit: Error (exit code 1)"),
        "{description}"
    );
    server.stop().await;
}

async fn stale_alerts_are_reconciled_at_start_up(backend: Backend) {
    let cluster = Cluster::new(backend).await;
    // Alerts a previous watcher left open: kafka (healthy now), a deleted workload, and the aggregator (still
    // crash looping).
    let store = gomon_alerting::Store::open(&cluster.database.config)
        .await
        .expect("store");
    let service = gomon_alerting::AlertService::new(store.clone(), &prometheus::Registry::new());
    let stale = |kind: &str, workload: &str, reason: &str| gomon_alerting::model::NewAlert {
        source: "kubernetes".into(),
        severity: Severity::P1,
        title: format!("{kind} {workload} in monitoring: {reason}"),
        namespace: Some("monitoring".into()),
        labels: [
            ("namespace", "monitoring"),
            ("workload_kind", kind),
            ("workload", workload),
            ("reason", reason),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        ..Default::default()
    };
    let mut ids = Vec::new();
    for (kind, workload, reason) in [
        ("StatefulSet", "kafka", "CrashLoopBackOff"),
        ("Deployment", "old-exporter", "ImagePullBackOff"),
        ("Deployment", "aggregator", "CrashLoopBackOff"),
    ] {
        let (alert, created) = service
            .create(
                stale(kind, workload, reason),
                Some("kubernetes-watcher".into()),
            )
            .await
            .expect("stale alert");
        assert!(created);
        ids.push(alert.id.to_string());
    }
    store.close().await;
    cluster.kube.put(fixture("kafka-0-healthy"));
    cluster.kube.put(crash_looping(
        "aggregator-7d9f8c6b5d-x2k4p",
        "11111111-0000-4000-8000-000000000001",
    ));
    let server = cluster.start().await;
    for id in &ids[..2] {
        eventually(LIMIT, "the stale alert to be resolved", || async {
            server.get(&format!("/api/v1/alerts/{id}")).await.1["status"] == "resolved"
        })
        .await;
    }
    let note = |actions: Value| {
        actions["actions"][1]["details"]["note"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let kafka = note(
        server
            .get(&format!("/api/v1/alerts/{}/actions", ids[0]))
            .await
            .1,
    );
    assert!(kafka.contains("its pods are healthy"), "{kafka}");
    let gone = note(
        server
            .get(&format!("/api/v1/alerts/{}/actions", ids[1]))
            .await
            .1,
    );
    assert!(gone.contains("its failing pods are gone"), "{gone}");
    // Still failing: kept, not duplicated.
    let open: Vec<Value> = kubernetes_alerts(&server)
        .await
        .into_iter()
        .filter(|alert| alert["status"] != "resolved")
        .collect();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["id"], ids[2]);
    assert_eq!(kubernetes_alerts(&server).await.len(), 3);
    server.stop().await;
}

async fn a_dropped_watch_resumes_and_a_410_relists_without_duplicates(backend: Backend) {
    let cluster = Cluster::new(backend).await;
    cluster.kube.put(fixture("kafka-0-crashloop"));
    let server = cluster.start().await;
    eventually(LIMIT, "the kafka alert", || async {
        kubernetes_alerts(&server).await.len() == 1
    })
    .await;
    eventually(LIMIT, "three watches open", || async {
        cluster.kube.open_watches() == 3
    })
    .await;
    let lists = cluster.kube.lists();
    assert_eq!(lists, 3, "one list per namespace");
    let watches = cluster.kube.watch_requests();

    // The connections drop: the watcher resumes from its resourceVersion, without listing again.
    cluster.kube.bookmark();
    cluster.kube.drop_watches();
    eventually(LIMIT, "the watches to be resumed", || async {
        cluster.kube.watch_requests() >= watches + 3 && cluster.kube.open_watches() == 3
    })
    .await;
    let mut again = fixture("kafka-0-crashloop");
    again["status"]["containerStatuses"][0]["restartCount"] = json!(8);
    cluster.kube.put(again);
    eventually(LIMIT, "the change to be seen", || async {
        metric(
            &server.metrics().await,
            "alerting_kube_watch_events_total{event=\"applied\"}",
        ) == Some(1.0)
    })
    .await;
    assert_eq!(
        cluster.kube.lists(),
        lists,
        "a dropped watch is resumed, not re-listed"
    );
    assert_eq!(
        kubernetes_alerts(&server).await.len(),
        1,
        "no duplicate alert"
    );

    // The history is gone (410): the watcher lists again, and finds kafka healthy meanwhile.
    cluster.kube.put_silently(fixture("kafka-0-healthy"));
    cluster.kube.expire();
    eventually(LIMIT, "a re-list after 410 Gone", || async {
        cluster.kube.lists() >= lists + 3
    })
    .await;
    eventually(LIMIT, "the kafka alert to be resolved", || async {
        kubernetes_alerts(&server).await[0]["status"] == "resolved"
    })
    .await;
    assert_eq!(
        kubernetes_alerts(&server).await.len(),
        1,
        "no duplicate alert"
    );
    let metrics = server.metrics().await;
    assert!(
        metric(&metrics, "alerting_kube_watch_errors_total").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "alerting_kube_watch_events_total{event=\"list_start\"}"
        )
        .is_some_and(|n| n >= 6.0)
    );
    server.stop().await;
}

async fn an_unreachable_api_server_is_retried_and_reported(backend: Backend) {
    let cluster = Cluster::new(backend).await;
    cluster.kube.put(fixture("kafka-0-crashloop"));
    cluster.kube.fail_requests(true);
    let server = cluster.start().await;
    eventually(LIMIT, "the watcher to report retrying", || async {
        let state = watcher_state(&server).await;
        state["state"] == "retrying" && state["last_error"].is_string()
    })
    .await;
    let (status, _) = server.get("/health/ready").await;
    assert_eq!(status, 200, "the API serves while the watcher retries");
    eventually(LIMIT, "errors counted", || async {
        metric(&server.metrics().await, "alerting_kube_watch_errors_total")
            .is_some_and(|n| n >= 2.0)
    })
    .await;
    let (status, _) = server
        .post("/api/v1/alerts", support::alert("still taking alerts"))
        .await;
    assert_eq!(status, 201);
    cluster.kube.fail_requests(false);
    eventually(
        LIMIT,
        "the kafka alert once the API server is back",
        || async { kubernetes_alerts(&server).await.len() == 1 },
    )
    .await;
    wait_watching(&server, 1).await;
    server.stop().await;
}

/// A watch the API server keeps open but sends nothing on (a proxy or NAT entry that died without closing the
/// connection) is dropped after `watch_idle_timeout`, and its namespace listed and watched again; `/health/ready`
/// says so meanwhile. Bookmarks keep a quiet watch alive. About the watcher alone, so on SQLite only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_watch_is_restarted_after_the_idle_timeout() {
    const IDLE: Duration = Duration::from_secs(1);
    let restarts = |metrics: &str| {
        metric(
            metrics,
            "alerting_kube_watch_restarts_total{reason=\"idle\"}",
        )
    };
    let cluster = Cluster::new(Backend::Sqlite).await;
    cluster.kube.put(fixture("aggregator-running"));
    cluster.kube.bookmark_every(Duration::from_millis(100));
    let mut config = cluster.config();
    config.kubernetes.watch_idle_timeout = IDLE;
    let server = Server::start_service(config).await;
    wait_watching(&server, 1).await;
    eventually(LIMIT, "three watches open", || async {
        cluster.kube.open_watches() == 3
    })
    .await;

    // Quiet but alive: no pod changes for well over the idle timeout, only bookmarks. Nothing is restarted.
    tokio::time::sleep(IDLE * 3).await;
    let metrics = server.metrics().await;
    assert_eq!(restarts(&metrics), Some(0.0), "{metrics}");
    assert_eq!(cluster.kube.lists(), 3, "no re-list while bookmarks arrive");
    assert_eq!(watcher_state(&server).await["state"], "watching");
    let watches = cluster.kube.watch_requests();

    // The connections stay open but go silent. The re-lists are held, to see the state in between.
    cluster.kube.hold_lists(true);
    cluster.kube.silence_watches();
    eventually(
        LIMIT,
        "the watcher to report the silent watches",
        || async {
            let state = watcher_state(&server).await;
            state["state"] == "restarting"
                && state["last_error"]
                    .as_str()
                    .is_some_and(|error| error.contains("received nothing for 1s"))
        },
    )
    .await;
    eventually(LIMIT, "the three idle watches counted", || async {
        restarts(&server.metrics().await).is_some_and(|n| n >= 3.0)
    })
    .await;
    eventually(LIMIT, "the silent connections to be dropped", || async {
        cluster.kube.silenced_open() == 0
    })
    .await;
    let state = watcher_state(&server).await;
    assert_eq!(state["state"], "restarting", "{state}");
    let (status, _) = server.get("/health/ready").await;
    assert_eq!(status, 200, "the API serves while the watcher restarts");

    cluster.kube.hold_lists(false);
    wait_watching(&server, 1).await;
    eventually(LIMIT, "new watches", || async {
        cluster.kube.watch_requests() >= watches + 3 && cluster.kube.open_watches() == 3
    })
    .await;
    assert!(cluster.kube.lists() >= 6, "listed again");

    // A failure after the restart reaches the watcher through the new watch.
    cluster.kube.put(fixture("kafka-0-crashloop"));
    eventually(LIMIT, "the kafka alert", || async {
        kubernetes_alerts(&server).await.len() == 1
    })
    .await;
    let metrics = server.metrics().await;
    assert!(
        metric(
            &metrics,
            "alerting_kube_watch_events_total{event=\"applied\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    server.stop().await;
}

/// Two replicas on one database: one holds the Lease and watches, the other stands by; when the holder dies,
/// the other takes the Lease over and carries on with the same alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_watch_one_at_a_time_and_take_over() {
    let cluster = Cluster::new(Backend::Postgres).await;
    cluster.kube.put(fixture("kafka-0-crashloop"));
    let mut config = cluster.config();
    config.kubernetes.leader_election.lease_duration = Duration::from_secs(1);
    config.kubernetes.leader_election.renew_interval = Duration::from_millis(100);
    config.kubernetes.leader_election.identity = Some("replica-a".into());
    let first = Server::start_service(config.clone()).await;
    eventually(LIMIT, "replica-a to lead", || async {
        watcher_state(&first).await["leader"] == true
    })
    .await;
    config.kubernetes.leader_election.identity = Some("replica-b".into());
    let second = Server::start_service(config).await;
    eventually(LIMIT, "replica-b to stand by", || async {
        let state = watcher_state(&second).await;
        state["state"] == "standby" && state["leader"] == false
    })
    .await;
    eventually(LIMIT, "the kafka alert", || async {
        kubernetes_alerts(&first).await.len() == 1
    })
    .await;
    assert_eq!(
        watcher_state(&second).await["pods"],
        0,
        "the standby replica does not watch"
    );
    // The holder dies without releasing the Lease.
    first.kill();
    eventually(LIMIT, "replica-b to take over", || async {
        watcher_state(&second).await["state"] == "watching"
    })
    .await;
    let lease = cluster
        .kube
        .lease("monitoring", "gomon-alerting-kube-watcher")
        .expect("lease");
    assert_eq!(lease["spec"]["holderIdentity"], "replica-b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    cluster.kube.put(fixture("kafka-0-healthy"));
    eventually(LIMIT, "replica-b to resolve the alert", || async {
        kubernetes_alerts(&second).await[0]["status"] == "resolved"
    })
    .await;
    assert_eq!(
        kubernetes_alerts(&second).await.len(),
        1,
        "one alert across both replicas"
    );
    second.stop().await;
}
