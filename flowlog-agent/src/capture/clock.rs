//! Kernel jiffies, as stamped on flows, placed on CLOCK_MONOTONIC.
//!
//! The programs stamp flows with `bpf_jiffies64()` because it costs a few
//! nanoseconds per packet where a clock read costs tens. Userspace cannot
//! read jiffies, so a probe program (run with BPF_PROG_TEST_RUN, never
//! attached) reads jiffies and the monotonic clock together into a map.
//! The tick length is measured once per process from two probes.

use std::{
    os::fd::{AsFd, BorrowedFd},
    sync::OnceLock,
    time::Duration,
};

use aya::maps::{Array, MapData};
use flowlog_common::ClockSample;

use super::sys;
use crate::model::{JiffiesRef, clock::ns_per_jiffy};

/// Longest the calibration waits for jiffies to advance: even at 100 Hz
/// that is 20 ticks.
const CALIBRATION_LIMIT: Duration = Duration::from_millis(200);
/// Ticks between the two calibration probes: enough to tell 250 Hz from
/// 300 Hz apart through a few milliseconds of scheduling noise.
const CALIBRATION_TICKS: u64 = 12;

/// Tick length, measured by the first capture that asks.
static NS_PER_JIFFY: OnceLock<u64> = OnceLock::new();

#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("running the clock probe: {0}")]
    Run(#[from] sys::SysError),
    #[error("duplicating the probe program fd: {0}")]
    Dup(std::io::Error),
    #[error("reading the clock map: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("jiffies did not advance steadily within {CALIBRATION_LIMIT:?}")]
    NoTick,
}

/// The probe program and the map it writes.
pub struct ClockProbe {
    program: std::os::fd::OwnedFd,
    map: Array<MapData, ClockSample>,
}

impl ClockProbe {
    pub fn new(program: BorrowedFd<'_>, map: Array<MapData, ClockSample>) -> Result<Self, ClockError> {
        let program = program.try_clone_to_owned().map_err(ClockError::Dup)?;
        Ok(Self { program, map })
    }

    fn sample(&self) -> Result<ClockSample, ClockError> {
        sys::test_run_xdp(self.program.as_fd(), &[0u8; 64])?;
        Ok(self.map.get(&0, 0)?)
    }

    /// Where jiffies stand now, with the process's tick length (measured
    /// on first use, blocking up to [`CALIBRATION_LIMIT`]).
    pub fn reference(&self) -> Result<JiffiesRef, ClockError> {
        let ns_per_jiffy = match NS_PER_JIFFY.get() {
            Some(n) => *n,
            None => {
                let n = self.calibrate()?;
                *NS_PER_JIFFY.get_or_init(|| n)
            }
        };
        let s = self.sample()?;
        Ok(JiffiesRef {
            jiffies: s.jiffies,
            monotonic_ns: s.monotonic_ns,
            ns_per_jiffy,
        })
    }

    fn calibrate(&self) -> Result<u64, ClockError> {
        let first = self.sample()?;
        let started = std::time::Instant::now();
        while started.elapsed() < CALIBRATION_LIMIT {
            std::thread::sleep(Duration::from_millis(5));
            let now = self.sample()?;
            if now.jiffies >= first.jiffies + CALIBRATION_TICKS
                && let Some(n) = ns_per_jiffy(
                    (first.jiffies, first.monotonic_ns),
                    (now.jiffies, now.monotonic_ns),
                )
            {
                tracing::debug!(hz = 1_000_000_000 / n, "kernel tick rate measured");
                return Ok(n);
            }
        }
        Err(ClockError::NoTick)
    }
}
