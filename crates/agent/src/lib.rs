//! Host metric collectors of `gomon agent`.
//!
//! A [`Collector`] reads the host through configurable roots ([`AgentConfig`]: `proc_root`, `sys_root`,
//! `root_fs`, like node_exporter's `--path.*` flags) and turns each cycle into a [`Snapshot`] of [`Sample`]s named
//! as node_exporter names them, plus GoMon's derived `gomon_*` gauges. One module per subsystem: CPU, memory,
//! filesystems, disks, network and system. Shipping snapshots anywhere is not this crate's concern.
//!
//! Every series, its type, labels and source are listed in `docs/agent-metrics.md`.

#![warn(missing_docs)]

mod collect;
pub mod config;
pub mod error;
pub mod sample;

pub use collect::{Collector, Subsystem};
pub use config::AgentConfig;
pub use error::Error;
pub use sample::{Kind, Sample, Snapshot};
