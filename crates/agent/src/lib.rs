//! Host metric collectors of `gomon agent`.
//!
//! A [`Collector`] reads the host through configurable roots ([`AgentConfig`]: `proc_root`, `sys_root`,
//! `root_fs`, like node_exporter's `--path.*` flags) and turns each cycle into a [`Snapshot`] of [`Sample`]s named
//! as node_exporter names them, plus GoMon's derived `gomon_*` gauges. One module per subsystem: CPU, memory,
//! filesystems, disks, software RAID, network, protocol statistics (netstat), softnet, sockets, bonding, system,
//! pressure, virtual memory, file handles, entropy, connection tracking, clock, kernel, operating system and text
//! files. [`run`] is the `gomon agent` role: it collects every `interval`, encodes each snapshot as a protobuf batch
//! and publishes it to Kafka ([`publish`]) from a bounded buffer, and serves the host's current values and its own
//! health on `/metrics`.
//!
//! Every series, its type, labels and source are listed in `docs/agent-metrics.md`.

#![warn(missing_docs)]

mod collect;
pub mod config;
pub mod error;
pub mod publish;
mod role;
pub mod sample;

pub use role::{Outlet, encode, run, run_with};

pub use collect::{Collector, Subsystem};
pub use config::AgentConfig;
pub use error::Error;
pub use sample::{Kind, Sample, Snapshot};
