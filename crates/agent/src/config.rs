//! Configuration of `gomon agent` (the `agent:` section of the configuration file).

use std::net::SocketAddr;

use crate::publish::KafkaConfig;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use gomon_runtime::config::KeyError;

use crate::error::Error;

/// Environment variable holding the Kubernetes node name (set from the downward API `spec.nodeName`).
pub const NODE_NAME_ENV: &str = "NODE_NAME";

/// The agent's default HTTP port: not node_exporter's 9100, so that both can share a node's network (both run with
/// `hostNetwork` in Kubernetes, beside kube-prometheus-stack's node-exporter).
pub const DEFAULT_PORT: u16 = 9110;

/// The shortest collection interval.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Filesystem types skipped by default: pseudo and virtual filesystems with no meaningful capacity.
pub const DEFAULT_FILESYSTEM_EXCLUDE_TYPES: &[&str] = &[
    "proc",
    "sysfs",
    "tmpfs",
    "devtmpfs",
    "devpts",
    "overlay",
    "cgroup",
    "cgroup2",
    "securityfs",
    "pstore",
    "debugfs",
    "tracefs",
    "configfs",
    "fusectl",
    "mqueue",
    "hugetlbfs",
    "bpf",
    "autofs",
    "binfmt_misc",
    "nsfs",
    "rpc_pipefs",
    "squashfs",
    "ramfs",
];

/// The agent's configuration. Every field has a default, so an empty section is valid.
///
/// The three roots work like node_exporter's `--path.procfs`, `--path.sysfs` and `--path.rootfs`: in a container
/// the host's `/proc`, `/sys` and `/` are mounted somewhere (say `/host/proc`, `/host/sys`, `/host/root`) and the
/// roots point there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Where the host's procfs is mounted.
    pub proc_root: PathBuf,
    /// Where the host's sysfs is mounted.
    pub sys_root: PathBuf,
    /// Where the host's root filesystem is mounted; mount points are resolved under it for `statvfs`.
    pub root_fs: PathBuf,
    /// Time between two collections (at least 1s).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// The `host` label of every sample. Unset: `NODE_NAME`, else `{proc_root}/sys/kernel/hostname`.
    pub hostname: Option<String>,
    /// Filesystem types (third field of `/proc/mounts`) that get no filesystem series.
    pub filesystem_exclude_types: Vec<String>,
    /// Network devices that get no network series; an entry ending in `*` matches by prefix (`veth*`).
    pub network_exclude_devices: Vec<String>,
    /// Longest wait for a cycle's `statvfs` calls (they run concurrently); a mount not answered by then is skipped.
    #[serde(with = "humantime_serde")]
    pub filesystem_timeout: Duration,
    /// Directory of `*.prom` files in the Prometheus text format whose samples every cycle adds, like
    /// node_exporter's `--collector.textfile.directory`. Unset: none, and `node_textfile_scrape_error` is 0.
    pub textfile_directory: Option<PathBuf>,
    /// Address of the agent's own HTTP server: `/metrics` (the host's current values and the agent's health, to
    /// scrape like node_exporter) and `/health/live`, `/health/ready`.
    pub listen: SocketAddr,
    /// The listener's limits: header-read timeout and concurrent connections.
    pub http: gomon_runtime::http::ListenerConfig,
    /// Most batches kept while Kafka is unreachable (default 30: ten minutes at the default interval); past it
    /// the oldest are dropped and counted.
    pub buffer_batches: usize,
    /// Where batches are published.
    pub kafka: KafkaConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            root_fs: PathBuf::from("/"),
            interval: Duration::from_secs(20),
            hostname: None,
            filesystem_exclude_types: DEFAULT_FILESYSTEM_EXCLUDE_TYPES
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
            network_exclude_devices: vec!["lo".to_owned()],
            filesystem_timeout: Duration::from_secs(5),
            textfile_directory: None,
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            http: gomon_runtime::http::ListenerConfig::default(),
            buffer_batches: 30,
            kafka: KafkaConfig::default(),
        }
    }
}

impl AgentConfig {
    /// Checks what types alone cannot: values in range. The error names the key.
    pub fn check(&self) -> Result<(), Error> {
        self.check_values()
            .map_err(|error| Error::Config(error.within("agent")))
    }

    fn check_values(&self) -> Result<(), KeyError> {
        if self.interval < MIN_INTERVAL {
            return Err(KeyError::new(
                "interval",
                format!("must be at least 1s, not {:?}", self.interval),
            ));
        }
        if self.filesystem_timeout < Duration::from_millis(1) {
            return Err(KeyError::new(
                "filesystem_timeout",
                format!("must be at least 1ms, not {:?}", self.filesystem_timeout),
            ));
        }
        if self
            .hostname
            .as_deref()
            .is_some_and(|h| h.trim().is_empty())
        {
            return Err(KeyError::new("hostname", "must not be empty when set"));
        }
        self.http.check().map_err(|error| error.within("http"))?;
        if self.buffer_batches == 0 {
            return Err(KeyError::new("buffer_batches", "must be at least 1"));
        }
        self.kafka.check().map_err(|error| error.within("kafka"))
    }

    /// The `host` label: `hostname` when set, else `node_name` (the value of `NODE_NAME`) when not empty, else
    /// the content of `{proc_root}/sys/kernel/hostname`.
    pub fn resolve_hostname(&self, node_name: Option<&str>) -> Result<String, Error> {
        fn set(value: Option<&str>) -> Option<&str> {
            value.map(str::trim).filter(|v| !v.is_empty())
        }
        if let Some(name) = set(self.hostname.as_deref()).or_else(|| set(node_name)) {
            return Ok(name.to_owned());
        }
        let path = self.proc_path("sys/kernel/hostname");
        let no_name = |why: String| {
            Error::Config(KeyError::new(
                "agent.hostname",
                format!("not set, {NODE_NAME_ENV} is not set either, and {why}"),
            ))
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|error| no_name(format!("{} cannot be read: {error}", path.display())))?;
        let hostname = text.trim();
        if hostname.is_empty() {
            return Err(no_name(format!("{} is empty", path.display())));
        }
        Ok(hostname.to_owned())
    }

    /// `relative` under `proc_root`.
    pub fn proc_path(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.proc_root.join(relative)
    }

    /// `relative` under `sys_root`.
    pub fn sys_path(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.sys_root.join(relative)
    }

    /// Where the host path `mountpoint` is found under `root_fs`: `/` with root `/host/root` is `/host/root/`.
    pub fn host_path(&self, mountpoint: &str) -> PathBuf {
        self.root_fs.join(mountpoint.trim_start_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_the_check() {
        let config = AgentConfig::default();
        assert!(config.check().is_ok());
        assert_eq!(config.interval, Duration::from_secs(20));
        assert_eq!(config.filesystem_timeout, Duration::from_secs(5));
        assert_eq!(config.network_exclude_devices, vec!["lo".to_owned()]);
        assert_eq!(config.filesystem_exclude_types.len(), 23);
    }

    #[test]
    fn short_interval_is_refused_naming_the_key() {
        let config = AgentConfig {
            interval: Duration::from_millis(500),
            ..AgentConfig::default()
        };
        let error = config.check().expect_err("too short").to_string();
        assert!(error.starts_with("agent.interval: "), "{error}");
        let config = AgentConfig {
            filesystem_timeout: Duration::ZERO,
            ..AgentConfig::default()
        };
        let error = config.check().expect_err("zero").to_string();
        assert!(error.starts_with("agent.filesystem_timeout: "), "{error}");
        let config = AgentConfig {
            hostname: Some(" ".to_owned()),
            ..AgentConfig::default()
        };
        let error = config.check().expect_err("empty").to_string();
        assert!(error.starts_with("agent.hostname: "), "{error}");
    }

    #[test]
    fn yaml_with_humantime_durations_and_unknown_keys() {
        let config: AgentConfig = yaml_serde::from_str(
            "proc_root: /host/proc\ninterval: 1m\nfilesystem_timeout: 250ms\n",
        )
        .expect("valid");
        assert_eq!(config.proc_root, PathBuf::from("/host/proc"));
        assert_eq!(config.sys_root, PathBuf::from("/sys"));
        assert_eq!(config.interval, Duration::from_secs(60));
        assert_eq!(config.filesystem_timeout, Duration::from_millis(250));
        let error = yaml_serde::from_str::<AgentConfig>("procroot: /x\n")
            .expect_err("unknown key")
            .to_string();
        assert!(error.contains("procroot"), "{error}");
    }

    #[test]
    fn host_paths_resolve_under_root_fs() {
        let config = AgentConfig {
            root_fs: PathBuf::from("/host/root"),
            ..AgentConfig::default()
        };
        assert_eq!(config.host_path("/"), PathBuf::from("/host/root/"));
        assert_eq!(config.host_path("/data"), PathBuf::from("/host/root/data"));
        let config = AgentConfig::default();
        assert_eq!(config.host_path("/"), PathBuf::from("/"));
        assert_eq!(config.host_path("/boot/efi"), PathBuf::from("/boot/efi"));
    }

    #[test]
    fn hostname_override_then_node_name_then_kernel_hostname() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("sys/kernel")).expect("mkdir");
        std::fs::write(dir.path().join("sys/kernel/hostname"), "kernel-name\n").expect("write");
        let mut config = AgentConfig {
            proc_root: dir.path().to_path_buf(),
            hostname: Some("configured".to_owned()),
            ..AgentConfig::default()
        };
        let resolve = |config: &AgentConfig, node: Option<&str>| {
            config.resolve_hostname(node).expect("resolves")
        };
        assert_eq!(resolve(&config, Some("node-a")), "configured");
        config.hostname = None;
        assert_eq!(resolve(&config, Some("node-a")), "node-a");
        assert_eq!(resolve(&config, Some("")), "kernel-name");
        assert_eq!(resolve(&config, None), "kernel-name");
        config.proc_root = dir.path().join("missing");
        let error = config
            .resolve_hostname(None)
            .expect_err("no name")
            .to_string();
        assert!(error.starts_with("agent.hostname: "), "{error}");
        assert!(error.contains("NODE_NAME"), "{error}");
    }
}
