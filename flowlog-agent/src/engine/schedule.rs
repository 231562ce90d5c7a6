//! When one flow log's windows begin and end: pure arithmetic on Unix
//! nanoseconds, no clock reads (the engine passes "now" in).
//!
//! Windows line up on multiples of their length since the epoch, so every
//! router's records share bounds. The first window starts when the flow log
//! becomes active and ends at the next boundary; each later one starts
//! where the last ended. A new length takes effect at the next boundary,
//! never cutting the window in progress short.

use std::time::Duration;

use crate::model::{Window, clock};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    length: Duration,
    start: i128,
    end: i128,
    /// A new length, applied at the next boundary.
    next_length: Option<Duration>,
    last: Option<Window>,
}

impl Schedule {
    /// The first window, from `now` to the next boundary.
    pub fn open(now: i128, length: Duration) -> Self {
        Self {
            length,
            start: now,
            end: clock::next_boundary(now, length),
            next_length: None,
            last: None,
        }
    }

    /// The window in progress.
    pub fn current(&self) -> Window {
        Window {
            start_ns: self.start,
            end_ns: self.end,
        }
    }

    pub fn length(&self) -> Duration {
        self.length
    }

    /// The last window closed, if any.
    pub fn last(&self) -> Option<Window> {
        self.last
    }

    /// Whether the window in progress has ended by `now`.
    pub fn is_due(&self, now: i128) -> bool {
        self.end <= now
    }

    /// Carries on a window an earlier run opened at `start`.
    pub fn resume_from(&mut self, start: i128) {
        self.start = start;
    }

    /// A new length from the next boundary on.
    pub fn change_length(&mut self, length: Duration) {
        self.next_length = Some(length);
    }

    /// Closes the window in progress at `end` (its boundary, or earlier for
    /// a deactivation) and returns it. With `reopen`, the next window
    /// starts at `end` with any new length, and ends at the first boundary
    /// after both `end` and `now`: a cut that comes late (a stalled loop)
    /// makes one longer window, never a burst of empty ones.
    pub fn close(&mut self, end: i128, now: i128, reopen: bool) -> Window {
        let closed = Window {
            start_ns: self.start,
            end_ns: end,
        };
        self.last = Some(closed);
        if reopen {
            if let Some(l) = self.next_length.take() {
                self.length = l;
            }
            self.start = end;
            self.end = clock::next_boundary(end.max(now), self.length);
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = 1_000_000_000;

    #[test]
    fn windows_start_at_activation_and_then_follow_boundaries() {
        let minute = Duration::from_secs(60);
        let mut s = Schedule::open(1_000 * S + S / 2, minute);
        assert_eq!(s.current().start_ns, 1_000 * S + S / 2);
        assert_eq!(s.current().end_ns, 1_020 * S);
        assert!(!s.is_due(1_019 * S) && s.is_due(1_020 * S));
        let first = s.close(1_020 * S, 1_020 * S, true);
        assert_eq!((first.start_ns, first.end_ns), (1_000 * S + S / 2, 1_020 * S));
        assert_eq!(
            s.current(),
            Window {
                start_ns: 1_020 * S,
                end_ns: 1_080 * S
            }
        );
        assert_eq!(s.last(), Some(first));
    }

    #[test]
    fn a_new_length_waits_for_the_boundary() {
        let mut s = Schedule::open(0, Duration::from_secs(60));
        s.change_length(Duration::from_secs(600));
        // The window in progress keeps its end.
        assert_eq!(s.current().end_ns, 60 * S);
        s.close(60 * S, 60 * S, true);
        assert_eq!(s.length(), Duration::from_secs(600));
        assert_eq!(
            s.current(),
            Window {
                start_ns: 60 * S,
                end_ns: 600 * S
            }
        );
    }

    #[test]
    fn a_late_cut_makes_one_longer_window_not_a_burst() {
        let mut s = Schedule::open(0, Duration::from_secs(60));
        // The loop stalled for three and a half windows.
        let closed = s.close(60 * S, 210 * S, true);
        assert_eq!(closed.end_ns, 60 * S);
        assert_eq!(
            s.current(),
            Window {
                start_ns: 60 * S,
                end_ns: 240 * S
            }
        );
    }

    #[test]
    fn a_deactivation_closes_early_and_opens_nothing() {
        let mut s = Schedule::open(0, Duration::from_secs(60));
        let closed = s.close(25 * S, 25 * S, false);
        assert_eq!(
            closed,
            Window {
                start_ns: 0,
                end_ns: 25 * S
            }
        );
        assert_eq!(s.last(), Some(closed));
    }
}
