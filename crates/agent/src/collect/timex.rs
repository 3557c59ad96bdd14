//! The kernel clock's discipline, from `adjtimex(2)` in read-only mode, as node_exporter's `timex` collector reports
//! it. `/proc` has no view of it, so this reads the kernel the agent runs on whatever `proc_root` says (in a
//! container that is the host's kernel, whose clock is the host's).

use std::io;

use crate::sample::Samples;

/// `TIME_ERROR`: what `adjtimex` returns while the clock is not synchronised.
const TIME_ERROR: i32 = 5;
/// `STA_NANO`: `offset` and `jitter` are in nanoseconds rather than microseconds.
const STA_NANO: i64 = 0x2000;
/// Scaled parts-per-million (16-bit fraction) of `freq`, `ppsfreq` and `stabil`.
const PPM16FRAC: f64 = 1_000_000.0 * 65_536.0;
const MICROSECONDS: f64 = 1_000_000.0;
const NANOSECONDS: f64 = 1_000_000_000.0;

/// The fields of `struct timex` node_exporter reports, and the clock state `adjtimex` returned.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Timex {
    pub(crate) state: i32,
    pub(crate) offset: i64,
    pub(crate) freq: i64,
    pub(crate) maxerror: i64,
    pub(crate) esterror: i64,
    pub(crate) status: i64,
    pub(crate) constant: i64,
    pub(crate) tick: i64,
    pub(crate) ppsfreq: i64,
    pub(crate) jitter: i64,
    pub(crate) shift: i64,
    pub(crate) stabil: i64,
    pub(crate) jitcnt: i64,
    pub(crate) calcnt: i64,
    pub(crate) errcnt: i64,
    pub(crate) stbcnt: i64,
    pub(crate) tai: i64,
}

/// Reads the kernel's clock state without changing it (`modes` 0).
pub(crate) fn read() -> io::Result<Timex> {
    // SAFETY: `timex` is a plain C struct of integers, for which all-zero bytes are a valid value.
    let mut buf: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `buf` is a valid, exclusively borrowed `timex`; with `modes` 0 the call only writes into it.
    let state = unsafe { libc::adjtimex(&mut buf) };
    if state == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(Timex {
        state,
        offset: buf.offset as i64,
        freq: buf.freq as i64,
        maxerror: buf.maxerror as i64,
        esterror: buf.esterror as i64,
        status: i64::from(buf.status),
        constant: buf.constant as i64,
        tick: buf.tick as i64,
        ppsfreq: buf.ppsfreq as i64,
        jitter: buf.jitter as i64,
        shift: i64::from(buf.shift),
        stabil: buf.stabil as i64,
        jitcnt: buf.jitcnt as i64,
        calcnt: buf.calcnt as i64,
        errcnt: buf.errcnt as i64,
        stbcnt: buf.stbcnt as i64,
        tai: i64::from(buf.tai),
    })
}

/// Emits node_exporter's `node_timex_*` series of `timex`, in its units (seconds, hertz, ratios).
pub(crate) fn emit(timex: &Timex, out: &mut Samples) {
    let sync = if timex.state == TIME_ERROR { 0.0 } else { 1.0 };
    let divisor = if timex.status & STA_NANO != 0 {
        NANOSECONDS
    } else {
        MICROSECONDS
    };
    let gauges = [
        ("node_timex_sync_status", sync),
        ("node_timex_offset_seconds", timex.offset as f64 / divisor),
        (
            "node_timex_frequency_adjustment_ratio",
            1.0 + timex.freq as f64 / PPM16FRAC,
        ),
        (
            "node_timex_maxerror_seconds",
            timex.maxerror as f64 / MICROSECONDS,
        ),
        (
            "node_timex_estimated_error_seconds",
            timex.esterror as f64 / MICROSECONDS,
        ),
        ("node_timex_status", timex.status as f64),
        ("node_timex_loop_time_constant", timex.constant as f64),
        ("node_timex_tick_seconds", timex.tick as f64 / MICROSECONDS),
        (
            "node_timex_pps_frequency_hertz",
            timex.ppsfreq as f64 / PPM16FRAC,
        ),
        (
            "node_timex_pps_jitter_seconds",
            timex.jitter as f64 / divisor,
        ),
        ("node_timex_pps_shift_seconds", timex.shift as f64),
        (
            "node_timex_pps_stability_hertz",
            timex.stabil as f64 / PPM16FRAC,
        ),
        ("node_timex_tai_offset_seconds", timex.tai as f64),
    ];
    for (name, value) in gauges {
        out.gauge(name, &[], value);
    }
    let counters = [
        ("node_timex_pps_jitter_total", timex.jitcnt),
        ("node_timex_pps_calibration_total", timex.calcnt),
        ("node_timex_pps_error_total", timex.errcnt),
        ("node_timex_pps_stability_exceeded_total", timex.stbcnt),
    ];
    for (name, value) in counters {
        out.counter(name, &[], value as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Kind;

    fn emitted(timex: &Timex) -> Vec<(String, f64, Kind)> {
        let mut out = Samples::new("h");
        emit(timex, &mut out);
        out.into_vec()
            .into_iter()
            .map(|s| (s.name, s.value, s.kind))
            .collect()
    }

    fn get(samples: &[(String, f64, Kind)], name: &str) -> f64 {
        samples
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, _)| *v)
            .unwrap_or_else(|| panic!("{name}"))
    }

    #[test]
    fn units_follow_node_exporter() {
        // An unsynchronised clock, as a host without NTP shows it: maxerror at its 16 s ceiling.
        let unsynced = Timex {
            state: TIME_ERROR,
            maxerror: 16_000_000,
            esterror: 1_500,
            status: 0x40,
            offset: 250,
            freq: -65_536 * 3,
            tick: 10_000,
            constant: 2,
            jitcnt: 7,
            ..Timex::default()
        };
        let samples = emitted(&unsynced);
        assert_eq!(samples.len(), 17);
        assert_eq!(get(&samples, "node_timex_sync_status"), 0.0);
        assert_eq!(get(&samples, "node_timex_maxerror_seconds"), 16.0);
        assert_eq!(get(&samples, "node_timex_estimated_error_seconds"), 0.0015);
        assert_eq!(get(&samples, "node_timex_offset_seconds"), 0.000_25);
        assert_eq!(
            get(&samples, "node_timex_frequency_adjustment_ratio"),
            1.0 - 3e-6
        );
        assert_eq!(get(&samples, "node_timex_tick_seconds"), 0.01);
        assert_eq!(get(&samples, "node_timex_status"), 64.0);
        assert_eq!(get(&samples, "node_timex_loop_time_constant"), 2.0);
        let jitter_total = samples
            .iter()
            .find(|(n, _, _)| n == "node_timex_pps_jitter_total")
            .expect("counter");
        assert_eq!((jitter_total.1, jitter_total.2), (7.0, Kind::Counter));

        // Synchronised, with nanosecond resolution.
        let synced = Timex {
            state: 0,
            status: STA_NANO,
            offset: -1_500_000,
            ..Timex::default()
        };
        let samples = emitted(&synced);
        assert_eq!(get(&samples, "node_timex_sync_status"), 1.0);
        assert_eq!(get(&samples, "node_timex_offset_seconds"), -0.0015);
    }

    #[test]
    fn the_kernel_answers() {
        let timex = read().expect("adjtimex in read-only mode");
        assert!(timex.tick > 0, "{timex:?}");
    }
}
