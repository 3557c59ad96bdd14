//! Load averages (`{proc_root}/loadavg`), uptime (`{proc_root}/uptime`), processes, context switches and boot
//! time (`{proc_root}/stat`), and the collection time.
//!
//! Each source is read on its own, so one missing file does not hide the others' series. `loadavg` is parsed
//! here because `procfs::LoadAverage` reads the loads as `f32` (1.36 would become 1.3600000143...).

use std::time::Duration;

use procfs::{FromRead, Uptime};

use crate::config::AgentConfig;
use crate::error::Error;
use crate::sample::Samples;

use super::{cpu, number, read};

/// Emits `node_time_seconds`: the start of the cycle, in seconds since the epoch.
pub(crate) fn time(now: Duration, out: &mut Samples) {
    out.gauge("node_time_seconds", &[], now.as_secs_f64());
}

/// Emits `node_load1`, `node_load5` and `node_load15`.
pub(crate) fn load(config: &AgentConfig, out: &mut Samples) -> Result<(), Error> {
    let path = config.proc_path("loadavg");
    let text = read(&path)?;
    let mut fields = text.split_whitespace();
    let mut loads = [0.0; 3];
    for (load, what) in loads
        .iter_mut()
        .zip(["1 minute", "5 minutes", "15 minutes"])
    {
        let field = fields
            .next()
            .ok_or_else(|| Error::parse(&path, format!("no {what} load")))?;
        *load = number(&path, what, field)?;
    }
    out.gauge("node_load1", &[], loads[0]);
    out.gauge("node_load5", &[], loads[1]);
    out.gauge("node_load15", &[], loads[2]);
    Ok(())
}

/// Emits `gomon_uptime_seconds`: time since boot, including time suspended.
pub(crate) fn uptime(config: &AgentConfig, out: &mut Samples) -> Result<(), Error> {
    let path = config.proc_path("uptime");
    let text = read(&path)?;
    let uptime = Uptime::from_read(text.as_bytes())
        .map_err(|error| Error::parse(&path, error.to_string()))?;
    out.gauge("gomon_uptime_seconds", &[], uptime.uptime);
    Ok(())
}

/// Emits `node_boot_time_seconds`, `node_context_switches_total`, `node_procs_running` and `node_procs_blocked`
/// for the fields present in `stat` (read once per cycle, with the CPU times).
pub(crate) fn stat(stat: &cpu::Stat, out: &mut Samples) {
    if let Some(boot_time) = stat.boot_time {
        out.gauge("node_boot_time_seconds", &[], boot_time as f64);
    }
    if let Some(switches) = stat.context_switches {
        out.counter("node_context_switches_total", &[], switches as f64);
    }
    if let Some(running) = stat.procs_running {
        out.gauge("node_procs_running", &[], running as f64);
    }
    if let Some(blocked) = stat.procs_blocked {
        out.gauge("node_procs_blocked", &[], blocked as f64);
    }
}
