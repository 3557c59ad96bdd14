//! The collectors, one module per subsystem, and the [`Collector`] that runs them all once per cycle.
//!
//! Each subsystem reads its files under the configured roots and appends samples; a subsystem whose source is
//! missing or malformed is logged and counted in [`Collector::errors`] while the others still report.

mod bonding;
mod conntrack;
mod cpu;
mod diskstats;
mod entropy;
mod filefd;
mod filesystem;
mod mdadm;
mod memory;
mod netstat;
mod network;
mod os_release;
mod pressure;
mod sockstat;
mod softnet;
mod system;
mod textfile;
mod timex;
mod uname;
mod vmstat;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::Instrument as _;

use crate::config::{AgentConfig, NODE_NAME_ENV};
use crate::error::Error;
use crate::sample::{Samples, Snapshot};

/// `USER_HZ` assumed when the system does not report it: the value on every mainstream Linux architecture.
const DEFAULT_TICKS_PER_SECOND: u64 = 100;

/// A group of series read from one part of the host, the unit in which failures are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subsystem {
    /// Per-CPU time by mode and usage, from `{proc_root}/stat`.
    Cpu,
    /// Memory and swap, from `{proc_root}/meminfo`.
    Memory,
    /// Capacity of mounted filesystems, from `{proc_root}/1/mounts` and `statvfs` under `root_fs`.
    Filesystem,
    /// Block device I/O, from `{proc_root}/diskstats`.
    Diskstats,
    /// Network interface traffic, from `{proc_root}/net/dev` and `{sys_root}/class/net`.
    Network,
    /// Load, uptime, processes, context switches and boot time, from `{proc_root}/loadavg`, `uptime` and `stat`.
    System,
    /// Virtual memory statistics (page faults, paging, swapping, OOM kills), from `{proc_root}/vmstat`.
    Vmstat,
    /// Kernel file handles, from `{proc_root}/sys/fs/file-nr`.
    Filefd,
    /// Connection tracking, from `{proc_root}/sys/net/netfilter` and `{proc_root}/net/stat/nf_conntrack`.
    Conntrack,
    /// The kernel clock's synchronisation, from `adjtimex(2)`.
    Timex,
    /// The kernel's name and version, from `uname(2)`.
    Uname,
    /// Bonded interfaces, from `{sys_root}/class/net`.
    Bonding,
    /// Software RAID, from `{proc_root}/mdstat`.
    Mdadm,
    /// Text files of other programs' metrics, from `agent.textfile_directory`.
    Textfile,
    /// Pressure stall information, from `{proc_root}/pressure`.
    Pressure,
    /// The kernel's entropy pool, from `{proc_root}/sys/kernel/random`.
    Entropy,
    /// Packet processing per CPU, from `{proc_root}/net/softnet_stat`.
    Softnet,
    /// Sockets by protocol, from `{proc_root}/net/sockstat` and `sockstat6`.
    Sockstat,
    /// Protocol statistics, from `{proc_root}/net/netstat`, `snmp` and `snmp6`.
    Netstat,
    /// The operating system, from `{root_fs}/etc/os-release` or `usr/lib/os-release`.
    Os,
}

impl Subsystem {
    /// Every subsystem, in the order a cycle collects them.
    pub const ALL: [Subsystem; 20] = [
        Subsystem::Cpu,
        Subsystem::Memory,
        Subsystem::System,
        Subsystem::Pressure,
        Subsystem::Vmstat,
        Subsystem::Filefd,
        Subsystem::Entropy,
        Subsystem::Conntrack,
        Subsystem::Timex,
        Subsystem::Uname,
        Subsystem::Os,
        Subsystem::Diskstats,
        Subsystem::Mdadm,
        Subsystem::Network,
        Subsystem::Netstat,
        Subsystem::Softnet,
        Subsystem::Sockstat,
        Subsystem::Bonding,
        Subsystem::Textfile,
        Subsystem::Filesystem,
    ];

    /// Lower-case name, suitable as a label value (`cpu`, `filesystem`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Subsystem::Cpu => "cpu",
            Subsystem::Memory => "memory",
            Subsystem::Filesystem => "filesystem",
            Subsystem::Diskstats => "diskstats",
            Subsystem::Network => "network",
            Subsystem::System => "system",
            Subsystem::Vmstat => "vmstat",
            Subsystem::Filefd => "filefd",
            Subsystem::Conntrack => "conntrack",
            Subsystem::Timex => "timex",
            Subsystem::Uname => "uname",
            Subsystem::Bonding => "bonding",
            Subsystem::Mdadm => "mdadm",
            Subsystem::Textfile => "textfile",
            Subsystem::Pressure => "pressure",
            Subsystem::Entropy => "entropy",
            Subsystem::Softnet => "softnet",
            Subsystem::Sockstat => "sockstat",
            Subsystem::Netstat => "netstat",
            Subsystem::Os => "os",
        }
    }
}

impl fmt::Display for Subsystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Collects host metrics: owns the configuration, the resolved host name, the previous CPU readings (usage is the
/// difference between two cycles) and the failure counts.
pub struct Collector {
    config: AgentConfig,
    host: String,
    ticks_per_second: f64,
    previous_cpu: Option<cpu::CpuTimes>,
    filesystems: filesystem::Filesystems,
    errors: BTreeMap<Subsystem, u64>,
    filesystem_timeouts: u64,
}

impl fmt::Debug for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collector")
            .field("config", &self.config)
            .field("host", &self.host)
            .field("errors", &self.errors)
            .field("filesystem_timeouts", &self.filesystem_timeouts)
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// A collector for `config` (checked by [`AgentConfig::check`]), resolving the host name (see
    /// [`AgentConfig::resolve_hostname`], with `NODE_NAME` from the environment).
    pub fn new(config: AgentConfig) -> Result<Collector, Error> {
        let node_name = std::env::var(NODE_NAME_ENV).ok();
        Collector::with_node_name(config, node_name.as_deref())
    }

    /// [`Collector::new`] with `node_name` standing for the value of `NODE_NAME` (`None`: unset), so that tests
    /// need not change the environment of their process.
    pub fn with_node_name(
        config: AgentConfig,
        node_name: Option<&str>,
    ) -> Result<Collector, Error> {
        let host = config.resolve_hostname(node_name)?;
        let ticks = match procfs::ticks_per_second() {
            0 => DEFAULT_TICKS_PER_SECOND,
            ticks => ticks,
        };
        Ok(Collector {
            config,
            host,
            ticks_per_second: ticks as f64,
            previous_cpu: None,
            filesystems: filesystem::Filesystems::new(),
            errors: Subsystem::ALL.iter().map(|s| (*s, 0)).collect(),
            filesystem_timeouts: 0,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// The `host` label of every sample.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Failed reads or parses of each subsystem's sources since creation (every subsystem is present, from 0).
    pub fn errors(&self) -> &BTreeMap<Subsystem, u64> {
        &self.errors
    }

    /// Mounts skipped since creation because `statvfs` took longer than `filesystem_timeout`.
    pub fn filesystem_timeouts(&self) -> u64 {
        self.filesystem_timeouts
    }

    /// Runs every subsystem once. Never fails: a failing subsystem is logged, counted and left out.
    ///
    /// CPU usage is computed against the previous call; the first call reports CPU times but no usage.
    pub async fn collect(&mut self) -> Snapshot {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut out = Samples::new(&self.host);

        // `stat` feeds both the CPU and the system series: read once, a failure counts for both.
        let span = collector_span(Subsystem::Cpu).entered();
        let stat = cpu::read_stat(&self.config);
        let cpu = stat.as_ref().map_err(Error::again).and_then(|stat| {
            cpu::collect(
                &self.config,
                stat,
                self.ticks_per_second,
                self.previous_cpu.as_ref(),
                &mut out,
            )
        });
        if let Some(current) = self.record(Subsystem::Cpu, cpu) {
            self.previous_cpu = Some(current);
        }
        drop(span);
        let span = collector_span(Subsystem::Memory).entered();
        let memory = memory::collect(&self.config, &mut out);
        self.record(Subsystem::Memory, memory);
        drop(span);
        let span = collector_span(Subsystem::System).entered();
        system::time(now, &mut out);
        let load = system::load(&self.config, &mut out);
        self.record(Subsystem::System, load);
        let uptime = system::uptime(&self.config, &mut out);
        self.record(Subsystem::System, uptime);
        let stat = stat.map(|stat| system::stat(&stat, &mut out));
        self.record(Subsystem::System, stat);
        drop(span);
        self.run(Subsystem::Pressure, &mut out, pressure::collect);
        self.run(Subsystem::Vmstat, &mut out, vmstat::collect);
        self.run(Subsystem::Filefd, &mut out, filefd::collect);
        self.run(Subsystem::Entropy, &mut out, entropy::collect);
        self.run(Subsystem::Conntrack, &mut out, conntrack::collect);
        let span = collector_span(Subsystem::Timex).entered();
        match timex::read() {
            Ok(state) => timex::emit(&state, &mut out),
            // Not allowed to ask (a seccomp profile): no series, as node_exporter.
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                tracing::debug!(%error, "adjtimex not permitted");
            }
            Err(error) => {
                let error = Error::Read {
                    path: "adjtimex(2)".into(),
                    source: error,
                };
                self.record::<()>(Subsystem::Timex, Err(error));
            }
        }
        drop(span);
        let span = collector_span(Subsystem::Uname).entered();
        uname::collect(&mut out);
        drop(span);
        self.run(Subsystem::Os, &mut out, os_release::collect);
        self.run(Subsystem::Diskstats, &mut out, diskstats::collect);
        self.run(Subsystem::Mdadm, &mut out, mdadm::collect);
        self.run(Subsystem::Network, &mut out, network::collect);
        self.run(Subsystem::Netstat, &mut out, netstat::collect);
        self.run(Subsystem::Softnet, &mut out, softnet::collect);
        self.run(Subsystem::Sockstat, &mut out, sockstat::collect);
        self.run(Subsystem::Bonding, &mut out, bonding::collect);
        let span = collector_span(Subsystem::Textfile).entered();
        textfile::collect(&self.config, &mut out);
        drop(span);
        let filesystems = self
            .filesystems
            .collect(&self.config, &mut out)
            .instrument(collector_span(Subsystem::Filesystem))
            .await;
        if let Some(timeouts) = self.record(Subsystem::Filesystem, filesystems) {
            self.filesystem_timeouts += timeouts;
        }

        Snapshot {
            host: self.host.clone(),
            timestamp_ms: i64::try_from(now.as_millis()).unwrap_or(i64::MAX),
            samples: out.into_vec(),
        }
    }

    /// Runs one collector of `subsystem` in its span, logging and counting its failure.
    fn run(
        &mut self,
        subsystem: Subsystem,
        out: &mut Samples,
        collect: fn(&AgentConfig, &mut Samples) -> Result<(), Error>,
    ) {
        let span = collector_span(subsystem).entered();
        let result = collect(&self.config, out);
        self.record(subsystem, result);
        drop(span);
    }

    /// Passes a success through; logs and counts a failure.
    fn record<T>(&mut self, subsystem: Subsystem, result: Result<T, Error>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                tracing::warn!(subsystem = subsystem.as_str(), %error, "collection failed");
                tracing::Span::current().record("otel.status_code", "ERROR");
                *self.errors.entry(subsystem).or_default() += 1;
                None
            }
        }
    }
}

/// A child span of the collection cycle for one collector; none when spans are not exported.
fn collector_span(subsystem: Subsystem) -> tracing::Span {
    if !gomon_runtime::telemetry::enabled() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "agent.collector",
        otel.name = %format_args!("collect {}", subsystem.as_str()),
        collector = subsystem.as_str(),
        otel.status_code = tracing::field::Empty,
    )
}

/// Reads a whole host file. Bytes that are not UTF-8 (a mount point or interface named in another encoding)
/// become U+FFFD rather than failing the whole file.
///
/// Files under /proc and /sys report a size of 0, so the buffer starts at a size that holds most of them in one
/// `read` (`std::fs::read` would ask for the size, then probe with a few bytes and grow from there).
pub(crate) fn read(path: &Path) -> Result<String, Error> {
    const FIRST_READ: usize = 4096;
    let mut bytes = Vec::with_capacity(FIRST_READ);
    std::fs::File::open(path)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(String::from_utf8(bytes)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned()))
}

/// Reads a host file that may rightly be absent (a kernel module not loaded, a driver not in use): `None` when it
/// does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, Error> {
    match read(path) {
        Ok(text) => Ok(Some(text)),
        Err(Error::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// The problems met in a file whose readable parts are still reported: a collector skips what it cannot parse,
/// emits the rest, and returns [`Skipped::finish`], so that the damage is still logged and counted once per cycle.
#[derive(Debug, Default)]
pub(crate) struct Skipped {
    first: Option<Error>,
    more: usize,
}

impl Skipped {
    /// Notes a part of `path` that was skipped; the first is kept and the others counted.
    pub(crate) fn note(&mut self, path: &Path, message: impl Into<String>) {
        if self.first.is_none() {
            self.first = Some(Error::parse(path, message));
        } else {
            self.more += 1;
        }
    }

    /// `Ok` when nothing was skipped, else the first problem (with how many others followed it).
    pub(crate) fn finish(self) -> Result<(), Error> {
        match self.first {
            None => Ok(()),
            Some(Error::Parse { path, message }) if self.more > 0 => Err(Error::parse(
                path,
                format!("{message} (and {} more skipped)", self.more),
            )),
            Some(error) => Err(error),
        }
    }
}

/// Parses one numeric field of `path`; `what` names it in the error.
pub(crate) fn number<T: std::str::FromStr>(
    path: &Path,
    what: &str,
    text: &str,
) -> Result<T, Error> {
    text.parse()
        .map_err(|_| Error::parse(path, format!("{what}: {text:?} is not a number")))
}

/// Test support: `collect` run over a fake `/proc` (also the root file system) holding `files` in its directory
/// `dir`; its samples and result.
#[cfg(test)]
pub(crate) fn collect_fake_proc(
    dir: &str,
    files: &[(&str, &str)],
    collect: fn(&AgentConfig, &mut Samples) -> Result<(), Error>,
) -> (Vec<crate::sample::Sample>, Result<(), Error>) {
    let root = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        let path = root.path().join(dir).join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    let config = AgentConfig {
        proc_root: root.path().to_path_buf(),
        root_fs: root.path().to_path_buf(),
        ..AgentConfig::default()
    };
    let mut out = Samples::new("h");
    let result = collect(&config, &mut out);
    (out.into_vec(), result)
}
