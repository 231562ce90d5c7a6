//! Time: window bounds aligned to wall-clock multiples of the window length,
//! and conversion of kernel CLOCK_MONOTONIC stamps to wall-clock time.

use std::time::Duration;

const NS_PER_SEC: i128 = 1_000_000_000;

/// A capture window, as Unix nanoseconds `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start_ns: i128,
    pub end_ns: i128,
}

impl Window {
    /// Unix seconds of the start (rounded down).
    pub fn start_secs(&self) -> i64 {
        self.start_ns.div_euclid(NS_PER_SEC) as i64
    }

    /// Unix seconds of the end (rounded up, so a partial last window that
    /// ends mid-second still covers its last packets).
    pub fn end_secs(&self) -> i64 {
        (self.end_ns + NS_PER_SEC - 1).div_euclid(NS_PER_SEC) as i64
    }
}

/// The first boundary strictly after `now_ns`: windows line up on multiples
/// of `len` since the Unix epoch (10:00, 10:10, … for 10 minutes), so
/// records from many routers share the same bounds.
pub fn next_boundary(now_ns: i128, len: Duration) -> i128 {
    // Lengths come validated (≥ 1 s); the floor keeps a bad one from
    // dividing by zero or ticking without pause.
    let len = len.as_nanos().max(1_000_000_000) as i128;
    (now_ns.div_euclid(len) + 1) * len
}

/// A jiffies count and the CLOCK_MONOTONIC time it was read at, with the
/// length of a jiffy: enough to place any nearby jiffies count in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JiffiesRef {
    pub jiffies: u64,
    pub monotonic_ns: u64,
    /// 0 when unknown (no kernel sample yet): conversions give nothing.
    pub ns_per_jiffy: u64,
}

impl JiffiesRef {
    /// CLOCK_MONOTONIC nanoseconds of a jiffies count.
    pub fn to_monotonic_ns(self, jiffies: u64) -> Option<i128> {
        if self.ns_per_jiffy == 0 {
            return None;
        }
        let delta = i128::from(jiffies) - i128::from(self.jiffies);
        Some(i128::from(self.monotonic_ns) + delta * i128::from(self.ns_per_jiffy))
    }
}

/// Kernel tick rates a Linux build can have.
const KNOWN_HZ: [u64; 5] = [100, 250, 300, 1000, 1024];

/// The tick length implied by two (jiffies, monotonic ns) samples, snapped
/// to the nearest configurable HZ; `None` when they are too close together.
pub fn ns_per_jiffy(a: (u64, u64), b: (u64, u64)) -> Option<u64> {
    let (dj, dt) = (b.0.checked_sub(a.0)?, b.1.checked_sub(a.1)?);
    if dj < 4 || dt == 0 {
        return None;
    }
    let hz = dj as f64 * 1e9 / dt as f64;
    let best = KNOWN_HZ
        .into_iter()
        .min_by(|x, y| (*x as f64 - hz).abs().total_cmp(&(*y as f64 - hz).abs()))?;
    Some(1_000_000_000 / best)
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC at one instant, and where kernel
/// jiffies stood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockOffset {
    pub realtime_minus_monotonic_ns: i128,
    pub jiffies: JiffiesRef,
}

impl ClockOffset {
    /// Samples both clocks; the realtime reading is the midpoint of two
    /// reads bracketing the monotonic one, and the tightest of three tries
    /// wins, so a preemption between the reads cannot skew the offset.
    pub fn sample() -> Self {
        let mut best: Option<(i128, i128)> = None;
        for _ in 0..3 {
            let r1 = now_ns(ClockId::Realtime);
            let m = now_ns(ClockId::Monotonic);
            let r2 = now_ns(ClockId::Realtime);
            let spread = r2 - r1;
            let offset = r1 + spread / 2 - m;
            if best.is_none_or(|(s, _)| spread < s) {
                best = Some((spread, offset));
            }
        }
        Self {
            realtime_minus_monotonic_ns: best.map_or(0, |(_, o)| o),
            jiffies: JiffiesRef::default(),
        }
    }

    /// The same offset, with a jiffies reference for [`Self::jiffies_to_unix_ms`].
    pub fn with_jiffies(mut self, jiffies: JiffiesRef) -> Self {
        self.jiffies = jiffies;
        self
    }

    /// Unix milliseconds of a kernel monotonic timestamp.
    pub fn to_unix_ms(self, monotonic_ns: u64) -> i64 {
        (i128::from(monotonic_ns) + self.realtime_minus_monotonic_ns).div_euclid(1_000_000) as i64
    }

    /// Unix milliseconds of a kernel jiffies count (one tick of
    /// resolution); `None` without a jiffies reference.
    pub fn jiffies_to_unix_ms(self, jiffies: u64) -> Option<i64> {
        let mono = self.jiffies.to_monotonic_ns(jiffies)?;
        Some((mono + self.realtime_minus_monotonic_ns).div_euclid(1_000_000) as i64)
    }
}

/// Where the engine reads the time: the system's realtime clock in the
/// agent, a clock a test moves by hand in unit tests.
pub trait Clock: Send + Sync {
    /// Unix nanoseconds now.
    fn unix_now_ns(&self) -> i128;
}

/// CLOCK_REALTIME.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_now_ns(&self) -> i128 {
        unix_now_ns()
    }
}

/// A clock that stands still until told to move.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::Mutex<i128>);

impl ManualClock {
    pub fn at(unix_ns: i128) -> Self {
        Self(std::sync::Mutex::new(unix_ns))
    }

    pub fn set(&self, unix_ns: i128) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = unix_ns;
    }
}

impl Clock for ManualClock {
    fn unix_now_ns(&self) -> i128 {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub use rustix::time::ClockId;

/// Current time of `clock` in nanoseconds.
pub fn now_ns(clock: ClockId) -> i128 {
    let ts = rustix::time::clock_gettime(clock);
    i128::from(ts.tv_sec) * NS_PER_SEC + i128::from(ts.tv_nsec)
}

/// Current Unix time in nanoseconds.
pub fn unix_now_ns() -> i128 {
    now_ns(ClockId::Realtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_align_to_the_epoch() {
        let ten_min = Duration::from_secs(600);
        // 2026-11-30 10:03:27.5 UTC
        let now = 1_796_033_007_500_000_000i128;
        let b = next_boundary(now, ten_min);
        assert_eq!(b % (600 * NS_PER_SEC), 0);
        assert!(b > now && b - now <= 600 * NS_PER_SEC);
        assert_eq!(b, 1_796_033_400 * NS_PER_SEC);
        // Exactly on a boundary: the next one, never the same instant.
        assert_eq!(next_boundary(b, ten_min), b + 600 * NS_PER_SEC);
    }

    #[test]
    fn window_seconds_cover_partial_ends() {
        let w = Window {
            start_ns: 10 * NS_PER_SEC + 400,
            end_ns: 12 * NS_PER_SEC + 1,
        };
        assert_eq!((w.start_secs(), w.end_secs()), (10, 13));
    }

    #[test]
    fn monotonic_stamps_convert_to_now() {
        let off = ClockOffset::sample();
        let mono = now_ns(ClockId::Monotonic) as u64;
        let wall_ms = (unix_now_ns() / 1_000_000) as i64;
        assert!(
            (off.to_unix_ms(mono) - wall_ms).abs() <= 5,
            "{} vs {wall_ms}",
            off.to_unix_ms(mono)
        );
        let fixed = ClockOffset {
            realtime_minus_monotonic_ns: 1_000 * NS_PER_SEC,
            jiffies: JiffiesRef::default(),
        };
        assert_eq!(fixed.to_unix_ms(2_500_000), 1_000_002);
        assert_eq!(fixed.jiffies_to_unix_ms(5), None);
        let j = fixed.with_jiffies(JiffiesRef {
            jiffies: 1000,
            monotonic_ns: 2 * NS_PER_SEC as u64,
            ns_per_jiffy: 4_000_000,
        });
        // 250 jiffies later is one second later; 25 earlier, 100 ms earlier.
        assert_eq!(j.jiffies_to_unix_ms(1250), Some(1_003_000));
        assert_eq!(j.jiffies_to_unix_ms(975), Some(1_001_900));
    }

    #[test]
    fn tick_length_snaps_to_a_real_hz() {
        // 250 Hz: 13 jiffies in 52 ms, with a little noise.
        assert_eq!(ns_per_jiffy((100, 0), (113, 51_000_000)), Some(4_000_000));
        assert_eq!(ns_per_jiffy((100, 0), (150, 50_000_000)), Some(1_000_000));
        assert_eq!(
            ns_per_jiffy((100, 0), (101, 4_000_000)),
            None,
            "too close to tell"
        );
    }
}
