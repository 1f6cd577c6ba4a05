//! Rate limits for log lines a guest can trigger (after Firecracker's rate-limited logger).
//! A guest that traps, crashes its sandbox or fails its start on every request must not be
//! able to fill the host's log: each such line has its own [`RateLimit`], which lets a burst
//! through per window and counts the rest, and the next line let through says how many
//! were suppressed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

pub struct RateLimit {
    burst: u32,
    window_ms: u64,
    state: Mutex<State>,
}

struct State {
    window_start_ms: u64,
    used: u32,
    suppressed: u64,
}

impl RateLimit {
    /// At most `burst` lines per `window`.
    pub const fn new(burst: u32, window: Duration) -> Self {
        RateLimit {
            burst,
            window_ms: window.as_millis() as u64,
            state: Mutex::new(State {
                window_start_ms: 0,
                used: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether a line may go out now: `Some(n)`, with `n` lines suppressed since the last
    /// one that went out; None: suppress this one.
    pub fn check(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.check_at(now)
    }

    /// [`check`](Self::check) at `now_ms` (wall clock, ms).
    pub fn check_at(&self, now_ms: u64) -> Option<u64> {
        let mut s = self.state.lock();
        if now_ms.saturating_sub(s.window_start_ms) >= self.window_ms {
            s.window_start_ms = now_ms;
            s.used = 0;
        }
        if s.used >= self.burst {
            s.suppressed += 1;
            return None;
        }
        s.used += 1;
        Some(std::mem::take(&mut s.suppressed))
    }

    /// Whether a line may go out now (the count of suppressed lines is dropped).
    pub fn allow(&self) -> bool {
        self.check().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_per_window_then_the_count_of_the_rest() {
        let l = RateLimit::new(3, Duration::from_secs(10));
        let t = 1_000_000;
        assert_eq!(l.check_at(t), Some(0));
        assert_eq!(l.check_at(t + 1), Some(0));
        assert_eq!(l.check_at(t + 2), Some(0));
        for i in 0..100 {
            assert_eq!(l.check_at(t + 3 + i), None);
        }
        // The next window lets a line through, saying how many were held back.
        assert_eq!(l.check_at(t + 10_000), Some(100));
        assert_eq!(l.check_at(t + 10_001), Some(0));
    }
}
