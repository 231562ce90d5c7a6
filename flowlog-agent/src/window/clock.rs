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
    let len = len.as_nanos() as i128;
    (now_ns.div_euclid(len) + 1) * len
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockOffset {
    pub realtime_minus_monotonic_ns: i128,
}

impl ClockOffset {
    /// Samples both clocks; the realtime reading is the midpoint of two
    /// reads bracketing the monotonic one, and the tightest of three tries
    /// wins, so a preemption between the reads cannot skew the offset.
    pub fn sample() -> Self {
        let mut best: Option<(i128, i128)> = None;
        for _ in 0..3 {
            let r1 = now_ns(libc::CLOCK_REALTIME);
            let m = now_ns(libc::CLOCK_MONOTONIC);
            let r2 = now_ns(libc::CLOCK_REALTIME);
            let spread = r2 - r1;
            let offset = r1 + spread / 2 - m;
            if best.is_none_or(|(s, _)| spread < s) {
                best = Some((spread, offset));
            }
        }
        Self {
            realtime_minus_monotonic_ns: best.map_or(0, |(_, o)| o),
        }
    }

    /// Unix milliseconds of a kernel monotonic timestamp.
    pub fn to_unix_ms(self, monotonic_ns: u64) -> i64 {
        (i128::from(monotonic_ns) + self.realtime_minus_monotonic_ns).div_euclid(1_000_000) as i64
    }
}

/// Current time of `clock` in nanoseconds.
pub fn now_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and a live timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * NS_PER_SEC + i128::from(ts.tv_nsec)
}

/// Current Unix time in nanoseconds.
pub fn unix_now_ns() -> i128 {
    now_ns(libc::CLOCK_REALTIME)
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
        let mono = now_ns(libc::CLOCK_MONOTONIC) as u64;
        let wall_ms = (unix_now_ns() / 1_000_000) as i64;
        assert!(
            (off.to_unix_ms(mono) - wall_ms).abs() <= 5,
            "{} vs {wall_ms}",
            off.to_unix_ms(mono)
        );
        let fixed = ClockOffset {
            realtime_minus_monotonic_ns: 1_000 * NS_PER_SEC,
        };
        assert_eq!(fixed.to_unix_ms(2_500_000), 1_000_002);
    }
}
