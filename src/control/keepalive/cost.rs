//! `cost:<w>`: the windows that minimise a stated cost on the function's own idle-time
//! distribution, the decide step of the predictive policy. A cold start costs `w`
//! GB-minutes; an instance loaded and idle costs its memory for the time. For a window
//! loaded through idle times `P ..= E` (pre-warm P, keep-alive K = E − P + 1), an idle time
//! i is warm inside it and wastes i − P; below it, it is cold and wastes nothing; above it
//! (or out of range), it is cold and wastes K. The policy takes the (P, K) with the least
//! expected cost over the idle times seen so far, which it reweighs as they come:
//! where the hybrid policy places fixed percentiles with fixed margins, this one asks what
//! each minute of keep-alive buys for this function.
//!
//! Each idle time seen is spread over ±20 % of itself: the next one near it is as likely
//! as it, and a window fitted to the exact values seen would miss by a minute. Until it has
//! seen a few, the policy keeps the instance as long as a cold start is worth: `w` ÷ its
//! memory in GB, in minutes.

use super::policy::{KeepAlive, Windows};

/// How far one observed idle time is spread, as a fraction of itself.
const SPREAD: f64 = 0.2;
/// Idle times seen before the distribution is trusted.
const MIN_SEEN: u64 = 3;

pub struct Cost {
    /// GB-minutes one cold start is worth.
    cold_gb_min: f64,
    memory_gb: f64,
    /// Weight per idle time (each observation spread over ±SPREAD of itself).
    bins: Vec<f64>,
    out_of_range: u64,
    seen: u64,
    /// Re-solve when `seen` reaches this (a geometric schedule), or after a miss.
    next_solve: u64,
    missed: bool,
    current: Windows,
}

impl Cost {
    pub fn new(cold_gb_min: f64, memory_mb: f64, range_minutes: u32) -> Self {
        Cost {
            cold_gb_min,
            memory_gb: memory_mb / 1024.0,
            bins: vec![0.0; range_minutes.max(1) as usize],
            out_of_range: 0,
            seen: 0,
            next_solve: MIN_SEEN,
            missed: false,
            current: Windows {
                prewarm: 0,
                keepalive: (cold_gb_min / (memory_mb / 1024.0).max(1e-3))
                    .clamp(1.0, range_minutes.max(1) as f64) as u32,
            },
        }
    }

    /// The least-cost window over the distribution so far: O(range²) with prefix sums.
    fn solve(&self) -> Windows {
        let r = self.bins.len();
        // count[i] = weight of idle times < i; sum[i] = their weighted sum.
        let mut count = vec![0f64; r + 1];
        let mut sum = vec![0f64; r + 1];
        for i in 0..r {
            count[i + 1] = count[i] + self.bins[i];
            sum[i + 1] = sum[i] + self.bins[i] * i as f64;
        }
        let total = self.seen as f64;
        let (w, m) = (self.cold_gb_min, self.memory_gb);
        let mut best = (f64::INFINITY, self.current);
        for p in 0..r {
            let below = count[p];
            for e in p..r {
                let inside = count[e + 1] - count[p];
                let inside_sum = sum[e + 1] - sum[p];
                let above = total - below - inside;
                let k = (e - p + 1) as f64;
                let waste = inside_sum - p as f64 * inside + k * above;
                let cost = w * (below + above) + m * waste;
                if cost < best.0 {
                    best = (
                        cost,
                        Windows {
                            prewarm: p as u32,
                            keepalive: (e - p + 1) as u32,
                        },
                    );
                }
            }
        }
        best.1
    }
}

impl KeepAlive for Cost {
    fn observe_idle(&mut self, minutes: u32) {
        if (minutes as usize) < self.bins.len() {
            // Idle times vary: the next one near this one is as likely as this one.
            let lo = (minutes as f64 * (1.0 - SPREAD)).floor() as usize;
            let hi = ((minutes as f64 * (1.0 + SPREAD)).ceil() as usize).min(self.bins.len() - 1);
            let share = 1.0 / (hi - lo + 1) as f64;
            for b in &mut self.bins[lo..=hi] {
                *b += share;
            }
        } else {
            self.out_of_range += 1;
        }
        self.seen += 1;
        let w = self.current;
        if self.seen > MIN_SEEN && (minutes < w.prewarm || minutes >= w.prewarm + w.keepalive) {
            self.missed = true;
        }
        if self.seen >= self.next_solve || (self.missed && self.seen.is_multiple_of(4)) {
            self.current = self.solve();
            self.missed = false;
            self.next_solve = self.seen + self.seen / 4 + 1;
        }
    }

    fn windows(&self) -> Windows {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_is_prewarmed_just_before_it_fires_and_unloaded_just_after() {
        // Every 30 minutes; a cold start worth 100 GB-min, 1 GB of memory. Before any idle
        // time: kept as long as a cold start is worth (100 minutes of 1 GB).
        let mut c = Cost::new(100.0, 1024.0, 240);
        assert_eq!(c.windows().keepalive, 100);
        for _ in 0..10 {
            c.observe_idle(29);
        }
        let w = c.windows();
        let last = w.prewarm + w.keepalive - 1;
        assert!(
            (20..=29).contains(&w.prewarm) && (29..=36).contains(&last),
            "{w:?}"
        );
    }

    #[test]
    fn cheap_cold_starts_or_dear_memory_mean_short_windows() {
        // Idle times spread over an hour: with a cold start worth little, hold an instance
        // a minute at most (where it hardly ever sits idle); worth a lot, cover the hour.
        let spread: Vec<u32> = (0..60).collect();
        let mut cheap = Cost::new(0.1, 1024.0, 240);
        let mut dear = Cost::new(1000.0, 1024.0, 240);
        for &i in spread.iter().chain(&spread) {
            cheap.observe_idle(i);
            dear.observe_idle(i);
        }
        assert!(cheap.windows().keepalive <= 2, "{:?}", cheap.windows());
        let d = dear.windows();
        assert!(d.prewarm == 0 && d.prewarm + d.keepalive > 59, "{d:?}");
    }
}
