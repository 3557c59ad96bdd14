//! Linux software RAID, from `{proc_root}/mdstat`, as node_exporter's `mdadm` collector reports it.
//!
//! Without the md driver there is no `mdstat`: no series, and no error.

use std::path::Path;

use crate::config::AgentConfig;
use crate::error::Error;
use crate::sample::Samples;

use super::{number, read_optional};

/// One array of `mdstat`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Array {
    /// `md0`.
    pub(crate) name: String,
    /// `active`, `inactive`, or while a sync runs `recovering`, `resyncing`, `checking` or `reshaping`.
    pub(crate) state: String,
    /// Disks the array needs (`N` of `[N/M]`).
    pub(crate) required: u64,
    /// Disks in use (`M` of `[N/M]`).
    pub(crate) active: u64,
    /// Members marked `(F)`.
    pub(crate) failed: u64,
    /// Members marked `(S)`.
    pub(crate) spare: u64,
    /// Size in 1 KiB blocks.
    pub(crate) blocks: u64,
    /// Blocks synced so far (`blocks` when no sync runs).
    pub(crate) synced: u64,
}

/// Parses `mdstat`. An array whose lines do not parse makes the whole file an error.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Vec<Array>, Error> {
    let lines: Vec<&str> = text.lines().collect();
    let mut arrays = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty()
            || line.starts_with(' ')
            || line.starts_with('\t')
            || line.starts_with("Personalities")
            || line.starts_with("unused")
        {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(name), Some(&":"), Some(state)) = (fields.first(), fields.get(1), fields.get(2))
        else {
            return Err(Error::parse(path, format!("unexpected line {line:?}")));
        };
        let status = lines
            .get(i + 1)
            .ok_or_else(|| Error::parse(path, format!("{name}: no status line")))?;
        let blocks: u64 = number(
            path,
            name,
            status.split_whitespace().next().unwrap_or_default(),
        )?;
        let failed = line.matches("(F)").count() as u64;
        let spare = line.matches("(S)").count() as u64;
        let (required, active) = if line.contains("raid0") || line.contains("linear") {
            let members = line.matches('[').count() as u64;
            (members, members)
        } else if *state == "inactive" {
            (0, 0)
        } else {
            disks(path, name, status)?
        };
        let mut array = Array {
            name: (*name).to_owned(),
            state: (*state).to_owned(),
            required,
            active,
            failed,
            spare,
            blocks,
            synced: blocks,
        };
        // The sync line, after an optional bitmap line.
        let mut sync = lines.get(i + 2).copied().unwrap_or_default();
        if sync.contains("bitmap") {
            sync = lines.get(i + 3).copied().unwrap_or_default();
        }
        let activity = [
            ("recovery", "recovering"),
            ("reshape", "reshaping"),
            ("check", "checking"),
            ("resync", "resyncing"),
        ]
        .into_iter()
        .find(|(word, _)| sync.contains(word));
        if let Some((_, state)) = activity {
            array.state = state.to_owned();
            array.synced = if sync.contains("PENDING") || sync.contains("DELAYED") {
                0
            } else {
                synced(path, name, sync)?
            };
        }
        arrays.push(array);
    }
    Ok(arrays)
}

/// `N` and `M` of the status line's `[N/M]`.
fn disks(path: &Path, name: &str, status: &str) -> Result<(u64, u64), Error> {
    let counts = status
        .split_whitespace()
        .find_map(|field| {
            let inner = field.strip_prefix('[')?.strip_suffix(']')?;
            inner.split_once('/')
        })
        .ok_or_else(|| Error::parse(path, format!("{name}: no [N/M] in {status:?}")))?;
    Ok((number(path, name, counts.0)?, number(path, name, counts.1)?))
}

/// The synced blocks of a sync line's `(synced/total)`.
fn synced(path: &Path, name: &str, sync: &str) -> Result<u64, Error> {
    let progress = sync
        .split_whitespace()
        .find_map(|field| {
            let inner = field.strip_prefix('(')?.strip_suffix(')')?;
            inner.split_once('/').map(|(done, _)| done)
        })
        .ok_or_else(|| Error::parse(path, format!("{name}: no progress in {sync:?}")))?;
    number(path, name, progress)
}

/// Emits `node_md_disks_required`, `node_md_disks{state=active|failed|spare}`, `node_md_state{state}` (1 for the
/// array's state among active, inactive, recovering, resync and check), `node_md_blocks` and `node_md_blocks_synced`,
/// each labelled with the array's `device`.
pub(crate) fn collect(config: &AgentConfig, out: &mut Samples) -> Result<(), Error> {
    let path = config.proc_path("mdstat");
    let Some(text) = read_optional(&path)? else {
        return Ok(());
    };
    for array in parse(&path, &text)? {
        let device = array.name.as_str();
        out.gauge(
            "node_md_disks_required",
            &[("device", device)],
            array.required as f64,
        );
        for (state, value) in [
            ("active", array.active),
            ("failed", array.failed),
            ("spare", array.spare),
        ] {
            out.gauge(
                "node_md_disks",
                &[("device", device), ("state", state)],
                value as f64,
            );
        }
        for (state, shown) in [
            ("active", "active"),
            ("inactive", "inactive"),
            ("recovering", "recovering"),
            ("resyncing", "resync"),
            ("checking", "check"),
        ] {
            let value = if array.state == state { 1.0 } else { 0.0 };
            out.gauge(
                "node_md_state",
                &[("device", device), ("state", shown)],
                value,
            );
        }
        out.gauge("node_md_blocks", &[("device", device)], array.blocks as f64);
        out.gauge(
            "node_md_blocks_synced",
            &[("device", device)],
            array.synced as f64,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MDSTAT: &str = "Personalities : [raid1] [raid6] [raid5] [raid4] [raid0]\n\
md0 : active raid1 sdb1[1] sda1[0]\n      1046528 blocks super 1.2 [2/2] [UU]\n\n\
md1 : active raid5 sdd1[3](F) sdc1[2] sdb2[1] sda2[0]\n      2093056 blocks super 1.2 level 5, 512k chunk, algorithm 2 [4/3] [UUU_]\n      bitmap: 0/1 pages [0KB], 65536KB chunk\n      [=>...................]  recovery =  8.5% (89472/1046528) finish=0.8min speed=19473K/sec\n\n\
md2 : active raid0 sde1[1] sdf1[0]\n      2095104 blocks super 1.2 512k chunks\n\n\
md127 : inactive sdg1[0](S)\n      1046528 blocks super 1.2\n\n\
unused devices: <none>\n";

    #[test]
    fn arrays_disks_and_sync_state() {
        let arrays = parse(Path::new("mdstat"), MDSTAT).expect("parses");
        let summary: Vec<(&str, &str, u64, u64, u64, u64, u64)> = arrays
            .iter()
            .map(|a| {
                (
                    a.name.as_str(),
                    a.state.as_str(),
                    a.required,
                    a.active,
                    a.failed,
                    a.spare,
                    a.synced,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("md0", "active", 2, 2, 0, 0, 1_046_528),
                ("md1", "recovering", 4, 3, 1, 0, 89_472),
                ("md2", "active", 2, 2, 0, 0, 2_095_104),
                ("md127", "inactive", 0, 0, 0, 1, 1_046_528),
            ]
        );
    }

    #[test]
    fn a_degraded_array_shows_in_node_exporter_s_series() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = AgentConfig {
            proc_root: dir.path().to_path_buf(),
            ..AgentConfig::default()
        };
        let mut out = Samples::new("h");
        collect(&config, &mut out).expect("no md driver is fine");
        assert!(out.into_vec().is_empty());
        std::fs::write(dir.path().join("mdstat"), MDSTAT).expect("write");
        let mut out = Samples::new("h");
        collect(&config, &mut out).expect("collects");
        let samples = out.into_vec();
        let get = |name: &str, device: &str, state: Option<&str>| {
            samples
                .iter()
                .find(|s| {
                    s.name == name && s.label("device") == Some(device) && s.label("state") == state
                })
                .map(|s| s.value)
        };
        assert_eq!(get("node_md_disks_required", "md1", None), Some(4.0));
        assert_eq!(get("node_md_disks", "md1", Some("active")), Some(3.0));
        assert_eq!(get("node_md_disks", "md1", Some("failed")), Some(1.0));
        assert_eq!(get("node_md_state", "md1", Some("recovering")), Some(1.0));
        assert_eq!(get("node_md_state", "md1", Some("active")), Some(0.0));
        assert_eq!(get("node_md_blocks_synced", "md1", None), Some(89_472.0));
    }

    #[test]
    fn malformed_files_are_errors_not_panics() {
        for text in [
            "md0 : active raid1 sda1[0]\n",
            "md0 : active raid1 sda1[0]\n      lots blocks\n",
            "md0 : active raid1 sda1[0]\n      100 blocks [x/2] [U_]\n",
            "md0 : active raid1 sda1[0]\n      100 blocks [2/1] [U_]\n      recovery = 1% finish=1min\n",
            "garbage\n",
        ] {
            assert!(parse(Path::new("mdstat"), text).is_err(), "{text:?}");
        }
    }
}
