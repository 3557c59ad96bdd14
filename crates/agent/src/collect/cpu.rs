//! CPU time per core and mode, and usage between two cycles, from `{proc_root}/stat`.
//!
//! `/proc/stat` is parsed here rather than with `procfs::KernelStats`, which drops the CPU number of each line
//! (and so mislabels cores once one is offline).

use std::path::Path;

use crate::config::AgentConfig;
use crate::error::Error;
use crate::sample::Samples;

use super::{number, read};

/// The modes of `node_cpu_seconds_total`, in `/proc/stat` column order. `guest` and `guest_nice` are left out:
/// the kernel already counts them in `user` and `nice`.
pub(crate) const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// Index of `idle` and `iowait` in [`MODES`]: the time usage counts as not busy.
const IDLE: usize = 3;
const IOWAIT: usize = 4;

/// Clock ticks spent in each of [`MODES`] since boot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ticks(pub(crate) [u64; 8]);

impl Ticks {
    /// Busy percentage between `earlier` and `self`, or `None` when no tick elapsed.
    ///
    /// A field that went backwards (per-CPU `iowait` can) counts as no change rather than as a huge jump.
    pub(crate) fn usage_since(&self, earlier: &Ticks) -> Option<f64> {
        let delta: Vec<u64> = self
            .0
            .iter()
            .zip(earlier.0.iter())
            .map(|(now, then)| now.saturating_sub(*then))
            .collect();
        let total: u64 = delta.iter().sum();
        if total == 0 {
            return None;
        }
        let idle = delta[IDLE] + delta[IOWAIT];
        let busy = total.saturating_sub(idle);
        Some((busy as f64 / total as f64 * 100.0).clamp(0.0, 100.0))
    }
}

/// The parts of `/proc/stat` the agent uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Stat {
    /// The aggregate `cpu` line.
    pub(crate) total: Option<Ticks>,
    /// The `cpuN` lines, with `N` as written.
    pub(crate) cpus: Vec<(String, Ticks)>,
    /// `ctxt`.
    pub(crate) context_switches: Option<u64>,
    /// `btime`, seconds since the epoch.
    pub(crate) boot_time: Option<u64>,
    /// `procs_running`.
    pub(crate) procs_running: Option<u64>,
    /// `procs_blocked`.
    pub(crate) procs_blocked: Option<u64>,
}

/// Reads and parses `{proc_root}/stat`.
pub(crate) fn read_stat(config: &AgentConfig) -> Result<Stat, Error> {
    let path = config.proc_path("stat");
    parse_stat(&path, &read(&path)?)
}

/// Parses the text of `/proc/stat` read from `path`.
pub(crate) fn parse_stat(path: &Path, text: &str) -> Result<Stat, Error> {
    let mut stat = Stat::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(key) = fields.next() else { continue };
        if let Some(id) = key
            .strip_prefix("cpu")
            .filter(|id| id.bytes().all(|b| b.is_ascii_digit()))
        {
            let mut ticks = Ticks::default();
            // Old kernels have fewer columns; the missing ones stay 0.
            for (slot, field) in ticks.0.iter_mut().zip(fields) {
                *slot = number(path, key, field)?;
            }
            if id.is_empty() {
                stat.total = Some(ticks);
            } else {
                stat.cpus.push((id.to_owned(), ticks));
            }
            continue;
        }
        let target = match key {
            "ctxt" => &mut stat.context_switches,
            "btime" => &mut stat.boot_time,
            "procs_running" => &mut stat.procs_running,
            "procs_blocked" => &mut stat.procs_blocked,
            _ => continue,
        };
        let value = fields
            .next()
            .ok_or_else(|| Error::parse(path, format!("{key}: no value")))?;
        *target = Some(number(path, key, value)?);
    }
    Ok(stat)
}

/// CPU readings kept from one cycle to the next.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct CpuTimes {
    total: Ticks,
    cpus: Vec<(String, Ticks)>,
}

/// From `stat` (read from `{proc_root}/stat`), emits `node_cpu_seconds_total{cpu,mode}` and, given the previous readings, `gomon_cpu_usage_percent` overall
/// and `{cpu}`. Returns this cycle's readings.
pub(crate) fn collect(
    config: &AgentConfig,
    stat: &Stat,
    ticks_per_second: f64,
    previous: Option<&CpuTimes>,
    out: &mut Samples,
) -> Result<CpuTimes, Error> {
    let total = stat
        .total
        .ok_or_else(|| Error::parse(config.proc_path("stat"), "no aggregate `cpu` line"))?;
    for (cpu, ticks) in &stat.cpus {
        for (mode, value) in MODES.iter().zip(ticks.0) {
            out.counter(
                "node_cpu_seconds_total",
                &[("cpu", cpu), ("mode", mode)],
                value as f64 / ticks_per_second,
            );
        }
    }
    if let Some(previous) = previous {
        if let Some(usage) = total.usage_since(&previous.total) {
            out.gauge("gomon_cpu_usage_percent", &[], usage);
        }
        for (cpu, ticks) in &stat.cpus {
            let earlier = previous.cpus.iter().find(|(id, _)| id == cpu);
            if let Some(usage) = earlier.and_then(|(_, earlier)| ticks.usage_since(earlier)) {
                out.gauge("gomon_cpu_usage_percent", &[("cpu", cpu)], usage);
            }
        }
    }
    Ok(CpuTimes {
        total,
        cpus: stat.cpus.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  10 20 30 400 50 6 7 8 9 10\n\
                        cpu0 5 10 15 200 25 3 4 4 0 0\n\
                        cpu2 5 10 15 200 25 3 3 4\n\
                        intr 12345 1 2 3\n\
                        ctxt 987654\n\
                        btime 1700000000\n\
                        processes 4242\n\
                        procs_running 3\n\
                        procs_blocked 1\n";

    #[test]
    fn parses_cpu_numbers_as_written_and_system_counters() {
        let stat = parse_stat(Path::new("stat"), STAT).expect("parses");
        assert_eq!(stat.total, Some(Ticks([10, 20, 30, 400, 50, 6, 7, 8])));
        assert_eq!(stat.cpus.len(), 2);
        assert_eq!(stat.cpus[1].0, "2");
        assert_eq!(stat.cpus[1].1, Ticks([5, 10, 15, 200, 25, 3, 3, 4]));
        assert_eq!(stat.context_switches, Some(987_654));
        assert_eq!(stat.boot_time, Some(1_700_000_000));
        assert_eq!(stat.procs_running, Some(3));
        assert_eq!(stat.procs_blocked, Some(1));
    }

    #[test]
    fn short_cpu_lines_leave_missing_modes_at_zero() {
        let stat = parse_stat(Path::new("stat"), "cpu 1 2 3 4\n").expect("parses");
        assert_eq!(stat.total, Some(Ticks([1, 2, 3, 4, 0, 0, 0, 0])));
    }

    #[test]
    fn garbage_is_a_parse_error_naming_the_file() {
        let error = parse_stat(Path::new("/x/stat"), "cpu 1 two 3 4\n")
            .expect_err("not a number")
            .to_string();
        assert!(error.contains("/x/stat"), "{error}");
        assert!(error.contains("\"two\""), "{error}");
    }

    #[test]
    fn usage_counts_idle_and_iowait_as_not_busy() {
        let before = Ticks([100, 0, 100, 700, 100, 0, 0, 0]);
        let after = Ticks([160, 0, 120, 800, 120, 0, 0, 0]);
        // total delta 200, idle+iowait delta 120: 40 % busy.
        assert_eq!(after.usage_since(&before), Some(40.0));
        assert_eq!(after.usage_since(&after), None);
        // iowait going backwards counts as 0, not as a wrap-around.
        let odd = Ticks([150, 0, 100, 750, 90, 0, 0, 0]);
        assert_eq!(odd.usage_since(&before), Some(50.0));
    }
}
