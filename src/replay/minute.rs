//! The minute model of Shahrad et al. (USENIX ATC'20), exactly as `surge replay` documents
//! it, so that results compare with the literature and with independent
//! reimplementations (`tests/replay_reference.py` is one):
//!
//! - a minute with invocations is busy; after busy minute `prev` the policy gives
//!   (pre-warm P, keep-alive K) in whole minutes, and an instance is loaded during minutes
//!   `prev+P+1 ..= prev+P+K`;
//! - the next busy minute `t` is warm inside that span; otherwise its first invocation is
//!   a cold start (every other invocation of a busy minute is warm); a function's first
//!   busy minute is cold;
//! - wasted memory is loaded idle minutes: a warm `t` wastes `t − (prev+P+1)`, a cold `t`
//!   after the span wastes K, a cold `t` before it wastes 0, and after the day's last busy
//!   minute the loaded minutes left inside the day are waste.

use crate::control::keepalive::KeepAlive;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub invocations: u64,
    pub cold_starts: u64,
    /// Loaded idle minutes (× the function's memory: the waste).
    pub wasted_minutes: u64,
}

/// One function's day (`per_minute[0]` is minute 1) under `policy`.
pub fn simulate(per_minute: &[u32], policy: &mut dyn KeepAlive) -> Outcome {
    let day = per_minute.len() as i64;
    let mut out = Outcome::default();
    // The last busy minute and the span loaded after it (first, last minute).
    let mut last: Option<(i64, i64, i64)> = None;
    for (i, &n) in per_minute.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let t = i as i64 + 1;
        out.invocations += n as u64;
        match last {
            None => out.cold_starts += 1,
            Some((prev, start, end)) => {
                if t < start {
                    out.cold_starts += 1;
                } else if t <= end {
                    out.wasted_minutes += (t - start) as u64;
                } else {
                    out.cold_starts += 1;
                    out.wasted_minutes += (end - start + 1) as u64;
                }
                policy.observe_idle((t - prev - 1) as u32);
            }
        }
        let w = policy.windows();
        let start = t + w.prewarm as i64 + 1;
        last = Some((t, start, start + w.keepalive as i64 - 1));
    }
    if let Some((_, start, end)) = last {
        out.wasted_minutes += (end.min(day) - start + 1).max(0) as u64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::keepalive::{fixed::Fixed, KeepAlive, Windows};

    fn day(busy: &[(usize, u32)]) -> Vec<u32> {
        let mut d = vec![0u32; 60];
        for &(minute, n) in busy {
            d[minute - 1] = n;
        }
        d
    }

    /// Every rule of the model, on a day of 60 minutes with a 10-minute keep-alive.
    #[test]
    fn the_rules_of_the_minute_model() {
        // Minute 1: first, cold (3 invocations, 1 cold). 2: warm, wastes 0. 12: warm (span
        // 3..12), wastes 9. 30: cold after the span 13..22, wastes 10. After 30: 31..40
        // loaded and idle, 10 more.
        let o = simulate(
            &day(&[(1, 3), (2, 1), (12, 2), (30, 1)]),
            &mut Fixed::new(10),
        );
        assert_eq!(
            o,
            Outcome {
                invocations: 7,
                cold_starts: 2,
                wasted_minutes: 9 + 10 + 10
            }
        );
        // The span is cut at the end of the day: busy at 55, loaded 56..65, 5 inside.
        let o = simulate(&day(&[(55, 1)]), &mut Fixed::new(10));
        assert_eq!((o.cold_starts, o.wasted_minutes), (1, 5));
        assert_eq!(simulate(&day(&[]), &mut Fixed::new(10)), Outcome::default());
    }

    /// A pre-warm window: loaded prev+P+1 ..= prev+P+K; a busy minute before it is cold and
    /// wastes nothing.
    #[test]
    fn prewarm_loads_later_and_a_minute_before_the_span_is_cold() {
        struct Pk(u32, u32);
        impl KeepAlive for Pk {
            fn observe_idle(&mut self, _: u32) {}
            fn windows(&self) -> Windows {
                Windows {
                    prewarm: self.0,
                    keepalive: self.1,
                }
            }
        }
        // After 10: loaded 15..17. 16 warm (wastes 1); after 16: 21..23; 19 is before it:
        // cold, no waste; after 19: 24..26, and 24..26 is all waste at the day's end... of
        // a 60-minute day: 3 more.
        let o = simulate(&day(&[(10, 1), (16, 1), (19, 1)]), &mut Pk(4, 3));
        assert_eq!(
            o,
            Outcome {
                invocations: 3,
                cold_starts: 2,
                wasted_minutes: 1 + 3
            }
        );
    }
}
