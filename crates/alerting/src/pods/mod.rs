//! The Kubernetes pod watcher: failing pods open alerts, recovered pods resolve them, through the alerting service
//! like any other alert.
//!
//! [`pod`] decides whether a pod is failing (pure functions of the Pod object), [`state`] folds watch events into
//! the pods seen and decides which alerts to open and resolve, and [`watcher`] runs the kube-rs watch streams, the
//! leader election ([`lease`]) and carries the decisions out; `activity` tells it when a watch went silent.

mod activity;
pub mod config;
pub mod lease;
pub mod pod;
pub mod state;
pub mod watcher;

pub use config::KubernetesConfig;
pub use watcher::{WatcherHealth, run};
