//! Helpers shared by the integration tests: a fake host built from the fixture files.

use std::path::{Path, PathBuf};

use gomon_agent::{AgentConfig, Snapshot};
use tempfile::TempDir;

/// The fixture directory.
pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fake host in a temporary directory: `proc/` copied from the fixtures (so files can be swapped), `sys/` the
/// fixture sysfs, and `root/` a root filesystem with the directories the fixture mount table names and the fixture
/// `os-release` in `usr/lib`.
pub(crate) struct FakeHost {
    /// Keeps the directory alive (never read).
    _dir: TempDir,
    /// The configuration pointing at it.
    pub config: AgentConfig,
}

impl FakeHost {
    /// Builds the fake host, with `node-a` as the configured host name.
    pub(crate) fn new() -> FakeHost {
        let dir = tempfile::tempdir().expect("temp dir");
        let proc = dir.path().join("proc");
        copy_dir(&fixtures().join("proc"), &proc);
        let root = dir.path().join("root");
        for path in ["data", "mnt/my disk", "usr/lib"] {
            std::fs::create_dir_all(root.join(path)).expect("mkdir");
        }
        std::fs::copy(
            fixtures().join("os-release"),
            root.join("usr/lib/os-release"),
        )
        .expect("copy os-release");
        let config = AgentConfig {
            proc_root: proc,
            sys_root: fixtures().join("sys"),
            root_fs: root,
            hostname: Some("node-a".to_owned()),
            ..AgentConfig::default()
        };
        FakeHost { _dir: dir, config }
    }

    /// Replaces `proc/{relative}` with the fixture file `fixture`.
    pub(crate) fn replace(&self, relative: &str, fixture: &str) {
        std::fs::copy(
            fixtures().join(fixture),
            self.config.proc_root.join(relative),
        )
        .expect("copy fixture");
    }

    /// Removes `proc/{relative}`.
    pub(crate) fn remove(&self, relative: &str) {
        std::fs::remove_file(self.config.proc_root.join(relative)).expect("remove");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The value of the sample `name` with exactly `labels` (besides `host`); panics naming it when absent.
pub(crate) fn value(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> f64 {
    snapshot
        .find(name, labels)
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
        .value
}

/// The distinct values of label `label` among the samples named `name`, sorted.
pub(crate) fn label_values(snapshot: &Snapshot, name: &str, label: &str) -> Vec<String> {
    let mut values: Vec<String> = snapshot
        .series(name)
        .filter_map(|s| s.label(label).map(str::to_owned))
        .collect();
    values.sort();
    values.dedup();
    values
}
