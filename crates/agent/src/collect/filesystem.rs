//! Capacity and inodes of mounted filesystems: the mount table from `{proc_root}/1/mounts` (the host's, when the
//! agent sees the host's PID 1; else `{proc_root}/mounts`), then `statvfs` of each mount point under `root_fs`.
//!
//! `statvfs` of a hung network mount can block for ever, so every call runs in `spawn_blocking` and the cycle waits
//! at most `filesystem_timeout` for all of them together. A mount whose call timed out is skipped, counted, and
//! not asked again until that call returns, so a hung mount holds one blocking thread, not one per cycle.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::AgentConfig;
use crate::error::Error;
use crate::sample::Samples;

use super::read;

/// One line of the mount table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mount {
    /// The mounted device or source (`/dev/sda1`, `server:/export`).
    pub(crate) device: String,
    /// The mount point, as the host sees it.
    pub(crate) mountpoint: String,
    /// The filesystem type (`ext4`).
    pub(crate) fstype: String,
    /// Mounted read-only (`ro` among the options of the fourth field).
    pub(crate) readonly: bool,
}

/// Parses `/proc/mounts` text, undoing the kernel's octal escapes (`\040` is a space).
pub(crate) fn parse_mounts(path: &Path, text: &str) -> Result<Vec<Mount>, Error> {
    let mut mounts = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let (Some(device), Some(mountpoint), Some(fstype)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(Error::parse(path, format!("short line {line:?}")));
        };
        let readonly = fields
            .next()
            .is_some_and(|options| options.split(',').any(|option| option == "ro"));
        mounts.push(Mount {
            device: unescape(device),
            mountpoint: unescape(mountpoint),
            fstype: unescape(fstype),
            readonly,
        });
    }
    Ok(mounts)
}

/// Replaces every `\NNN` (three octal digits) by the byte it stands for.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            digits
                .iter()
                .all(|d| (b'0'..=b'7').contains(d))
                .then(|| digits.iter().fold(0u32, |n, d| n * 8 + u32::from(d - b'0')))
        });
        match (bytes[i], octal.and_then(|n| u8::try_from(n).ok())) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mounts whose type is not excluded, one per mount point: when several are stacked on the same point, the last
/// (the visible one) wins, in the position of the first.
fn select(mounts: Vec<Mount>, exclude_types: &[String]) -> Vec<Mount> {
    let mut selected: Vec<Mount> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for mount in mounts {
        if exclude_types.contains(&mount.fstype) {
            continue;
        }
        match index.get(&mount.mountpoint) {
            Some(&i) => selected[i] = mount,
            None => {
                index.insert(mount.mountpoint.clone(), selected.len());
                selected.push(mount);
            }
        }
    }
    selected
}

/// What `statvfs` tells about one filesystem, in bytes and inodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FsStats {
    /// Total size.
    pub(crate) size: u64,
    /// Free space, including the blocks reserved for root.
    pub(crate) free: u64,
    /// Free space available to unprivileged users.
    pub(crate) avail: u64,
    /// Total inodes.
    pub(crate) files: u64,
    /// Free inodes.
    pub(crate) files_free: u64,
}

/// `statvfs(2)` of `path`, sizes in bytes.
fn statvfs(path: &Path) -> io::Result<FsStats> {
    let stats = rustix::fs::statvfs(path)?;
    let block = if stats.f_frsize > 0 {
        stats.f_frsize
    } else {
        stats.f_bsize
    };
    Ok(FsStats {
        size: stats.f_blocks.saturating_mul(block),
        free: stats.f_bfree.saturating_mul(block),
        avail: stats.f_bavail.saturating_mul(block),
        files: stats.f_files,
        files_free: stats.f_ffree,
    })
}

/// The function that stats one path; [`statvfs`] except in tests.
pub(crate) type StatFn = dyn Fn(&Path) -> io::Result<FsStats> + Send + Sync;

/// How asking one mount went.
#[derive(Debug)]
enum Outcome {
    Stats(FsStats),
    Failed(io::Error),
    TimedOut,
    /// A call from an earlier cycle has not returned yet.
    Stuck,
}

/// The filesystem collector: the stat function and the paths whose call is still running.
pub(crate) struct Filesystems {
    stat: Arc<StatFn>,
    in_flight: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Filesystems {
    /// A collector using `statvfs(2)`.
    pub(crate) fn new() -> Self {
        Self::with_stat(Arc::new(statvfs))
    }

    /// A collector using `stat` instead of `statvfs(2)`.
    pub(crate) fn with_stat(stat: Arc<StatFn>) -> Self {
        Self {
            stat,
            in_flight: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Emits `node_filesystem_*{device,fstype,mountpoint}` (`device_error` and `readonly` for every mount, the
    /// capacity series for those `statvfs` answered), `gomon_filesystem_used_bytes{mountpoint}` and
    /// `gomon_filesystem_used_percent{device,fstype,mountpoint}`. Returns how many mounts timed out.
    pub(crate) async fn collect(
        &self,
        config: &AgentConfig,
        out: &mut Samples,
    ) -> Result<u64, Error> {
        let mounts = select(read_mounts(config)?, &config.filesystem_exclude_types);
        let outcomes = self.stat_all(config, &mounts).await;
        let mut timeouts = 0;
        for (mount, outcome) in mounts.iter().zip(outcomes) {
            let labels = [
                ("device", mount.device.as_str()),
                ("fstype", mount.fstype.as_str()),
                ("mountpoint", mount.mountpoint.as_str()),
            ];
            let readonly = if mount.readonly { 1.0 } else { 0.0 };
            out.gauge("node_filesystem_readonly", &labels, readonly);
            let stats = match outcome {
                Outcome::Stats(stats) => stats,
                Outcome::Failed(error) => {
                    tracing::debug!(mountpoint = %mount.mountpoint, %error, "statvfs failed");
                    out.gauge("node_filesystem_device_error", &labels, 1.0);
                    continue;
                }
                Outcome::TimedOut => {
                    tracing::warn!(
                        mountpoint = %mount.mountpoint,
                        timeout = ?config.filesystem_timeout,
                        "statvfs timed out; mount skipped until the call returns"
                    );
                    timeouts += 1;
                    out.gauge("node_filesystem_device_error", &labels, 1.0);
                    continue;
                }
                Outcome::Stuck => {
                    tracing::debug!(mountpoint = %mount.mountpoint, "statvfs still hanging; mount skipped");
                    out.gauge("node_filesystem_device_error", &labels, 1.0);
                    continue;
                }
            };
            out.gauge("node_filesystem_device_error", &labels, 0.0);
            out.gauge("node_filesystem_size_bytes", &labels, stats.size as f64);
            out.gauge("node_filesystem_free_bytes", &labels, stats.free as f64);
            out.gauge("node_filesystem_avail_bytes", &labels, stats.avail as f64);
            out.gauge("node_filesystem_files", &labels, stats.files as f64);
            out.gauge(
                "node_filesystem_files_free",
                &labels,
                stats.files_free as f64,
            );
            let used = stats.size.saturating_sub(stats.free);
            out.gauge(
                "gomon_filesystem_used_bytes",
                &[("mountpoint", mount.mountpoint.as_str())],
                used as f64,
            );
            // As df: the share of the space unprivileged users can have, reserved blocks left out.
            let usable = used.saturating_add(stats.avail);
            if usable > 0 {
                out.gauge(
                    "gomon_filesystem_used_percent",
                    &labels,
                    used as f64 / usable as f64 * 100.0,
                );
            }
        }
        Ok(timeouts)
    }

    /// Stats every mount concurrently and waits for all of them until one shared deadline.
    async fn stat_all(&self, config: &AgentConfig, mounts: &[Mount]) -> Vec<Outcome> {
        let deadline = Instant::now() + config.filesystem_timeout;
        let calls: Vec<Option<JoinHandle<io::Result<FsStats>>>> = mounts
            .iter()
            .map(|mount| self.start(config.host_path(&mount.mountpoint)))
            .collect();
        let mut outcomes = Vec::with_capacity(calls.len());
        for call in calls {
            let outcome = match call {
                None => Outcome::Stuck,
                Some(call) => match tokio::time::timeout_at(deadline, call).await {
                    Ok(Ok(Ok(stats))) => Outcome::Stats(stats),
                    Ok(Ok(Err(error))) => Outcome::Failed(error),
                    Ok(Err(join)) => Outcome::Failed(io::Error::other(join.to_string())),
                    Err(_elapsed) => Outcome::TimedOut,
                },
            };
            outcomes.push(outcome);
        }
        outcomes
    }

    /// Starts the stat of `path` on the blocking pool, unless a call for it is still running.
    fn start(&self, path: PathBuf) -> Option<JoinHandle<io::Result<FsStats>>> {
        if !lock(&self.in_flight).insert(path.clone()) {
            return None;
        }
        let stat = Arc::clone(&self.stat);
        let in_flight = Arc::clone(&self.in_flight);
        Some(tokio::task::spawn_blocking(move || {
            let result = stat(&path);
            lock(&in_flight).remove(&path);
            result
        }))
    }
}

/// Locks the in-flight set; a panic while it was held cannot leave it inconsistent, so poisoning is ignored.
fn lock(set: &Mutex<HashSet<PathBuf>>) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
    set.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The host's mount table: `{proc_root}/1/mounts`, or `{proc_root}/mounts` when that cannot be read.
fn read_mounts(config: &AgentConfig) -> Result<Vec<Mount>, Error> {
    let host = config.proc_path("1/mounts");
    let (path, text) = match read(&host) {
        Ok(text) => (host, text),
        Err(error) => {
            tracing::debug!(%error, "falling back to the agent's own mount table");
            let own = config.proc_path("mounts");
            let text = read(&own)?;
            (own, text)
        }
    };
    parse_mounts(&path, &text)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::sample::Sample;

    #[test]
    fn octal_escapes_are_undone() {
        assert_eq!(unescape(r"/mnt/my\040disk"), "/mnt/my disk");
        assert_eq!(unescape(r"/a\011b\134c\012"), "/a\tb\\c\n");
        assert_eq!(unescape(r"/plain\09"), r"/plain\09");
        assert_eq!(unescape(r"/trailing\"), r"/trailing\");
    }

    #[test]
    fn excluded_types_go_and_stacked_mounts_keep_the_visible_one() {
        let text = "/dev/sda1 / ext4 rw 0 0\n\
                    proc /proc proc rw 0 0\n\
                    /dev/sdb1 /data ext4 rw 0 0\n\
                    /dev/sdc1 /data xfs ro,relatime 0 0\n";
        let mounts = parse_mounts(Path::new("mounts"), text).expect("parses");
        let readonly: Vec<bool> = mounts.iter().map(|m| m.readonly).collect();
        assert_eq!(readonly, [false, false, false, true]);
        let bare = parse_mounts(Path::new("mounts"), "/dev/x /x ext4\n").expect("no options");
        assert!(!bare[0].readonly);
        let exclude = vec!["proc".to_owned()];
        let selected = select(mounts, &exclude);
        let points: Vec<(&str, &str)> = selected
            .iter()
            .map(|m| (m.mountpoint.as_str(), m.device.as_str()))
            .collect();
        assert_eq!(points, vec![("/", "/dev/sda1"), ("/data", "/dev/sdc1")]);
    }

    fn error_flag(samples: &[Sample], mountpoint: &str) -> Option<f64> {
        samples
            .iter()
            .find(|s| {
                s.name == "node_filesystem_device_error"
                    && s.label("mountpoint") == Some(mountpoint)
            })
            .map(|s| s.value)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hung_mount_times_out_and_is_not_asked_again_until_it_returns() {
        let proc = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            proc.path().join("mounts"),
            "/dev/sda1 / ext4 rw 0 0\nserver:/export /nfs nfs4 rw 0 0\n",
        )
        .expect("write");
        let config = AgentConfig {
            proc_root: proc.path().to_path_buf(),
            root_fs: PathBuf::from("/host"),
            filesystem_timeout: Duration::from_millis(50),
            ..AgentConfig::default()
        };
        let (release, hold) = mpsc::channel::<()>();
        let hold = Mutex::new(hold);
        let calls = Arc::new(Mutex::new(Vec::<PathBuf>::new()));
        let seen = Arc::clone(&calls);
        let stat: Arc<StatFn> = Arc::new(move |path: &Path| {
            seen.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(path.to_path_buf());
            if path == Path::new("/host/nfs") {
                // Hangs until the test releases it, like a dead NFS server.
                let _ = hold.lock().unwrap_or_else(PoisonError::into_inner).recv();
            }
            Ok(FsStats {
                size: 1000,
                free: 400,
                avail: 300,
                files: 10,
                files_free: 5,
            })
        });
        let filesystems = Filesystems::with_stat(stat);

        let mut out = Samples::new("h");
        let timeouts = filesystems
            .collect(&config, &mut out)
            .await
            .expect("collects");
        let samples = out.into_vec();
        assert_eq!(timeouts, 1);
        assert_eq!(error_flag(&samples, "/"), Some(0.0));
        assert_eq!(error_flag(&samples, "/nfs"), Some(1.0));
        let size = samples
            .iter()
            .find(|s| s.name == "node_filesystem_size_bytes")
            .expect("root size");
        assert_eq!(size.label("mountpoint"), Some("/"));
        assert_eq!(size.value, 1000.0);
        let percent = samples
            .iter()
            .find(|s| s.name == "gomon_filesystem_used_percent")
            .expect("root percent");
        assert_eq!(percent.value, 600.0 / 900.0 * 100.0);

        // Still hanging: skipped without a second call, and not counted as a new timeout.
        let mut out = Samples::new("h");
        let timeouts = filesystems
            .collect(&config, &mut out)
            .await
            .expect("collects");
        assert_eq!(timeouts, 0);
        assert_eq!(error_flag(&out.into_vec(), "/nfs"), Some(1.0));
        let nfs_calls = |calls: &Mutex<Vec<PathBuf>>| {
            calls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .filter(|p| p.as_path() == Path::new("/host/nfs"))
                .count()
        };
        assert_eq!(nfs_calls(&calls), 1);

        // Once the call returns, the mount is asked again.
        drop(release);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !lock(&filesystems.in_flight).is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut out = Samples::new("h");
        let timeouts = filesystems
            .collect(&config, &mut out)
            .await
            .expect("collects");
        assert_eq!(timeouts, 0);
        assert_eq!(error_flag(&out.into_vec(), "/nfs"), Some(0.0));
        assert_eq!(nfs_calls(&calls), 2);
    }
}
