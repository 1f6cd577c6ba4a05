//! The per-function load window: the monitoring step, recorded on the data path where the
//! requests are, and read by the control path (the horizontal decider, and the vertical
//! loop's busy instances).
//!
//! The "level" is the number of requests inside the function's deployment at a
//! moment (executing + queued in the activator). Concurrency is averaged over
//! time: each bucket holds the time-weighted integral of the level
//! (level × nanoseconds), not samples. Arrivals are counted per bucket.
//!
//! Time is nanoseconds since the window's origin (`new`'s `now`). An instant
//! earlier than the latest one seen is treated as equal to it, so time never
//! runs backwards here. Nothing reads a clock: `now` is always a parameter.
//! The ring is allocated once in `new`; nothing is allocated afterwards.

use std::time::Duration;
use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Bucket index held (`elapsed_ns / granularity_ns`); any other index reads as zero.
    index: u64,
    /// Integral of the level over the bucket, level × ns. A bucket is at most 1 s wide, so
    /// u64 holds levels up to 1.8 × 10^10 (it saturates beyond); u128 made each function's
    /// ring twice the size, most of what a function at zero costs the host.
    level_ns: u64,
    /// Requests that arrived in the bucket (saturating).
    arrivals: u32,
}

// The ring is most of what a function at zero costs the host: keep a slot small.
const _: () = assert!(std::mem::size_of::<Slot>() == 24);

impl Slot {
    const fn fresh(index: u64) -> Self {
        Slot {
            index,
            level_ns: 0,
            arrivals: 0,
        }
    }
}

/// Time-bucketed level integral and arrival counts of one function.
#[derive(Clone, Debug)]
pub struct Window {
    origin: Instant,
    /// Bucket width, ns (≥ 1).
    gran_ns: u64,
    /// Longest window answered, ns (≥ `gran_ns`).
    span_ns: u64,
    /// Ring of `span_ns / gran_ns + 2` buckets.
    slots: Box<[Slot]>,
    /// Latest instant accounted, ns since `origin`.
    last_ns: u64,
    level: u64,
    idle_since: Option<Instant>,
    /// The idle spans that ended (level 0 → 1) since the first busy span, newest at
    /// `gaps_total % GAPS`: what the keep-alive policy learns from. Read by the control path
    /// with [`gaps_after`](Self::gaps_after); a reader more than `GAPS` behind loses the
    /// oldest.
    gaps: [Gap; GAPS],
    gaps_total: u64,
    /// Whether the level was ever above 0 (the span before the first request is no gap).
    was_busy: bool,
}

/// Idle spans kept for the control path to read.
pub const GAPS: usize = 16;

/// One idle span that ended with an arrival.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gap {
    pub idle: Duration,
    /// The arrival found warm capacity (instances ready).
    pub warm: bool,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Window {
    /// Buckets `granularity` wide (at least 1 ns), enough to answer for windows
    /// up to `span` (at least one granularity): a ring of
    /// `span / granularity + 2` buckets, allocated here once.
    pub fn new(now: Instant, granularity: Duration, span: Duration) -> Self {
        let gran_ns = nanos(granularity).max(1);
        let span_ns = nanos(span).max(gran_ns);
        let len = usize::try_from(span_ns / gran_ns + 2).unwrap_or(usize::MAX);
        Window {
            origin: now,
            gran_ns,
            span_ns,
            slots: vec![Slot::fresh(u64::MAX); len].into_boxed_slice(),
            last_ns: 0,
            level: 0,
            idle_since: Some(now),
            gaps: [Gap::default(); GAPS],
            gaps_total: 0,
            was_busy: false,
        }
    }

    /// The level changes by `delta` at `now` (+1 when a request enters, -1
    /// when it leaves). The old level is accounted up to `now` first; the new
    /// level saturates at 0. Dropping to 0 records `now` as idle-since.
    pub fn change(&mut self, now: Instant, delta: i64) {
        self.change_found(now, delta, true);
    }

    /// [`change`](Self::change), where an entering request found warm capacity or not: an
    /// idle span it ends is recorded as a [`Gap`].
    pub fn change_found(&mut self, now: Instant, delta: i64, warm: bool) {
        let t = self.advance(now);
        let before = self.level;
        self.level = before.saturating_add_signed(delta);
        if self.level > 0 {
            if before == 0 {
                if let (true, Some(since)) = (self.was_busy, self.idle_since) {
                    self.gaps[(self.gaps_total % GAPS as u64) as usize] = Gap {
                        idle: now.saturating_duration_since(since),
                        warm,
                    };
                    self.gaps_total += 1;
                }
                self.was_busy = true;
            }
            self.idle_since = None;
        } else if before > 0 {
            self.idle_since = Some(self.instant_at(t, now));
        }
    }

    /// One request arrived at `now` (counted in the bucket containing `now`).
    pub fn arrival(&mut self, now: Instant) {
        let t = self.advance(now);
        let slot = self.slot_mut(t / self.gran_ns);
        slot.arrivals = slot.arrivals.saturating_add(1);
    }

    /// The level right now.
    pub fn level(&self) -> u64 {
        self.level
    }

    /// Time-weighted average level over (now - window, now], in requests.
    ///
    /// `window` is clamped to [granularity, span]; if less than `window` has
    /// passed since `new`, the average is over the time since `new`. None (not
    /// enough data) while less than one granularity has passed since `new`.
    /// The oldest bucket, when the window starts inside it, counts in
    /// proportion to its overlap (as if its level were uniform), so the error
    /// is at most one granularity's worth of level variation at the old edge;
    /// bucket-aligned windows are exact.
    pub fn average_concurrency(&mut self, now: Instant, window: Duration) -> Option<f64> {
        let (start, end) = self.range(now, window)?;
        let integral = self.sum(start, end, |s| s.level_ns as f64);
        Some(integral / (end - start) as f64)
    }

    /// Arrivals per second over the same window as `average_concurrency`,
    /// same rules.
    pub fn arrival_rate(&mut self, now: Instant, window: Duration) -> Option<f64> {
        let (start, end) = self.range(now, window)?;
        let count = self.sum(start, end, |s| s.arrivals as f64);
        Some(count * 1e9 / (end - start) as f64)
    }

    /// The idle spans recorded after the first `seen` (oldest first, at most [`GAPS`]),
    /// and the count to pass next time.
    pub fn gaps_after(&self, seen: u64) -> (Vec<Gap>, u64) {
        let from = seen.max(self.gaps_total.saturating_sub(GAPS as u64));
        let out = (from..self.gaps_total)
            .map(|i| self.gaps[(i % GAPS as u64) as usize])
            .collect();
        (out, self.gaps_total)
    }

    /// When the level last became 0 (or `new`'s `now` if it never was above
    /// 0); None while the level is above 0.
    pub fn idle_since(&self) -> Option<Instant> {
        if self.level > 0 {
            None
        } else {
            self.idle_since
        }
    }

    /// Accounts the current level up to `now` and returns `now` in ns since
    /// the origin (never earlier than the last accounted instant).
    fn advance(&mut self, now: Instant) -> u64 {
        let end = nanos(now.saturating_duration_since(self.origin)).max(self.last_ns);
        let level = self.level;
        if level > 0 && end > self.last_ns {
            let g = self.gran_ns;
            let last_idx = end / g;
            // Buckets older than one ring length would be overwritten anyway.
            let ring = self.slots.len() as u64;
            let oldest = last_idx.saturating_sub(ring - 1);
            let start = self.last_ns.max(oldest.saturating_mul(g));
            for idx in start / g..=last_idx {
                let lo = start.max(idx * g);
                let hi = end.min(idx.saturating_add(1).saturating_mul(g));
                if hi > lo {
                    let slot = self.slot_mut(idx);
                    slot.level_ns = slot.level_ns.saturating_add(level.saturating_mul(hi - lo));
                }
            }
        }
        self.last_ns = end;
        end
    }

    /// The window (start, end] in ns since origin for a query at `now`.
    fn range(&mut self, now: Instant, window: Duration) -> Option<(u64, u64)> {
        let end = self.advance(now);
        if end < self.gran_ns {
            return None;
        }
        let len = nanos(window).clamp(self.gran_ns, self.span_ns).min(end);
        Some((end - len, end))
    }

    /// Sums `value` over the buckets covering [start, end], weighting the
    /// oldest bucket by the fraction of it inside the window.
    fn sum(&self, start: u64, end: u64, value: impl Fn(&Slot) -> f64) -> f64 {
        let g = self.gran_ns;
        let first = start / g;
        let mut total = 0.0;
        for idx in first..=end / g {
            let Some(slot) = self.slot(idx) else { continue };
            let mut v = value(slot);
            if idx == first {
                let covered = (first + 1).saturating_mul(g) - start;
                v *= covered as f64 / g as f64;
            }
            total += v;
        }
        total
    }

    fn slot(&self, index: u64) -> Option<&Slot> {
        let slot = &self.slots[(index % self.slots.len() as u64) as usize];
        (slot.index == index).then_some(slot)
    }

    fn slot_mut(&mut self, index: u64) -> &mut Slot {
        let len = self.slots.len() as u64;
        let slot = &mut self.slots[(index % len) as usize];
        if slot.index != index {
            *slot = Slot::fresh(index);
        }
        slot
    }

    /// The instant `t` ns after the origin (`fallback` if unrepresentable).
    fn instant_at(&self, t: u64, fallback: Instant) -> Instant {
        self.origin
            .checked_add(Duration::from_nanos(t))
            .unwrap_or(fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn close(got: Option<f64>, want: Option<f64>) -> bool {
        match (got, want) {
            (Some(g), Some(w)) => (g - w).abs() < 1e-9,
            (None, None) => true,
            _ => false,
        }
    }

    #[test]
    fn average_concurrency_table() {
        struct Case<'a> {
            name: &'static str,
            gran: Duration,
            span: Duration,
            /// (ms after t0, level delta)
            events: &'a [(u64, i64)],
            /// (ms after t0, window, expected average)
            queries: &'a [(u64, Duration, Option<f64>)],
        }
        let cases = [
            Case {
                name: "constant 3 for 10 s",
                gran: secs(1),
                span: secs(60),
                events: &[(0, 1), (0, 1), (0, 1)],
                queries: &[
                    (10_000, secs(10), Some(3.0)),
                    // Window longer than the history: average since `new`.
                    (10_000, secs(60), Some(3.0)),
                    (10_000, secs(1), Some(3.0)),
                ],
            },
            Case {
                name: "0 for 5 s then 4 for 5 s",
                gran: secs(1),
                span: secs(60),
                events: &[(5_000, 4)],
                queries: &[(10_000, secs(10), Some(2.0)), (10_000, secs(5), Some(4.0))],
            },
            Case {
                name: "step inside a bucket",
                gran: secs(1),
                span: secs(60),
                events: &[(0, 2), (2_250, 4)],
                queries: &[
                    // 2 × 2.25 s + 6 × 1.75 s = 15 level-s over 4 s.
                    (4_000, secs(4), Some(3.75)),
                    // 2 × 0.25 s + 6 × 1.75 s = 11 level-s over 2 s.
                    (4_000, secs(2), Some(5.5)),
                ],
            },
            Case {
                name: "query mid-bucket, window start mid-bucket, level uniform",
                gran: secs(1),
                span: secs(60),
                events: &[(0, 5)],
                queries: &[(7_300, secs(3), Some(5.0)), (7_300, secs(60), Some(5.0))],
            },
            Case {
                name: "level above 0 across a gap longer than the ring",
                gran: secs(1),
                span: secs(10),
                events: &[(0, 1), (100_000, -1)],
                queries: &[
                    (100_000, secs(10), Some(1.0)),
                    // Window clamped to the 10 s span.
                    (100_000, secs(60), Some(1.0)),
                    (105_000, secs(10), Some(0.5)),
                ],
            },
            Case {
                name: "level 0 across a gap longer than the ring: stale buckets read 0",
                gran: secs(1),
                span: secs(10),
                events: &[(0, 2), (5_000, -2), (50_000, 1)],
                queries: &[(50_000, secs(10), Some(0.0)), (55_000, secs(10), Some(0.5))],
            },
            Case {
                name: "coarse buckets (3 s) with a 10 s span",
                gran: secs(3),
                span: secs(10),
                events: &[(0, 1), (9_000, 1)],
                queries: &[
                    (12_000, secs(9), Some(4.0 / 3.0)),
                    (12_000, secs(3), Some(2.0)),
                ],
            },
            Case {
                name: "not enough data before one granularity",
                gran: secs(1),
                span: secs(60),
                events: &[(0, 3)],
                queries: &[
                    (0, secs(10), None),
                    (999, secs(10), None),
                    (1_000, secs(10), Some(3.0)),
                ],
            },
        ];
        for c in cases {
            let t0 = Instant::now();
            let mut w = Window::new(t0, c.gran, c.span);
            let mut events = c.events.iter().peekable();
            for &(at, window, want) in c.queries {
                while let Some(&&(e_at, delta)) = events.peek() {
                    if e_at > at {
                        break;
                    }
                    w.change(t0 + ms(e_at), delta);
                    events.next();
                }
                let got = w.average_concurrency(t0 + ms(at), window);
                assert!(
                    close(got, want),
                    "{}: at {at} ms over {window:?}: got {got:?}, want {want:?}",
                    c.name
                );
            }
        }
    }

    #[test]
    fn arrival_rate() {
        let t0 = Instant::now();
        let mut w = Window::new(t0, secs(1), secs(60));
        assert_eq!(w.arrival_rate(t0, secs(10)), None);
        // Two per second: at 0.25 s, 0.75 s, ..., 9.75 s.
        for k in 0..20 {
            w.arrival(t0 + ms(250 + 500 * k));
            if k == 7 {
                // 8 arrivals in the first 4 s; window longer than history.
                assert!(close(w.arrival_rate(t0 + secs(4), secs(10)), Some(2.0)));
            }
        }
        for (window, want) in [(secs(10), 2.0), (secs(5), 2.0), (secs(1), 2.0)] {
            let got = w.arrival_rate(t0 + secs(10), window);
            assert!(close(got, Some(want)), "{window:?}: {got:?}");
        }
        // Arrivals do not move the level.
        assert_eq!(w.level(), 0);
        // Ten quiet seconds later the 10 s rate is 0.
        assert!(close(w.arrival_rate(t0 + secs(20), secs(10)), Some(0.0)));
    }

    #[test]
    fn idle_spans_are_recorded_after_the_first_busy_span() {
        let t0 = Instant::now();
        let mut w = Window::new(t0, ms(100), secs(10));
        // Deploy at t0, first request at 5 s: no gap (nothing was busy before).
        w.change_found(t0 + secs(5), 1, false);
        w.change(t0 + secs(5) + ms(10), -1);
        assert_eq!(w.gaps_after(0), (vec![], 0));
        // Idle 3 s, then a warm arrival; two requests overlapping are one busy span.
        w.change_found(t0 + secs(8) + ms(10), 1, true);
        w.change_found(t0 + secs(8) + ms(20), 1, true);
        w.change(t0 + secs(8) + ms(30), -1);
        w.change(t0 + secs(8) + ms(40), -1);
        w.change_found(t0 + secs(9) + ms(40), 1, false);
        let (gaps, seen) = w.gaps_after(0);
        assert_eq!(
            gaps,
            vec![
                Gap {
                    idle: secs(3),
                    warm: true
                },
                Gap {
                    idle: secs(1),
                    warm: false
                }
            ]
        );
        assert_eq!(w.gaps_after(seen), (vec![], 2));
        assert_eq!(w.gaps_after(1).0.len(), 1);
        // A reader far behind gets the newest GAPS.
        w.change(t0 + secs(9) + ms(50), -1);
        for i in 0..(GAPS as u64 + 5) {
            let at = t0 + secs(10 + i);
            w.change_found(at, 1, true);
            w.change(at + ms(1), -1);
        }
        let (gaps, seen) = w.gaps_after(0);
        assert_eq!((gaps.len(), seen), (GAPS, GAPS as u64 + 7));
    }

    #[test]
    fn idle_since_transitions() {
        let t0 = Instant::now();
        let mut w = Window::new(t0, secs(1), secs(60));
        // (ms after t0, delta, level after, idle_since after as ms after t0)
        let steps: &[(u64, i64, u64, Option<u64>)] = &[
            (1_000, 1, 1, None),
            (2_000, 1, 2, None),
            (3_000, -1, 1, None),
            (4_000, -1, 0, Some(4_000)),
            // Leaving at 0 saturates and keeps the earlier idle-since.
            (5_000, -1, 0, Some(4_000)),
            (6_000, 0, 0, Some(4_000)),
            (7_000, 3, 3, None),
            (8_000, -3, 0, Some(8_000)),
        ];
        assert_eq!(w.idle_since(), Some(t0));
        for &(at, delta, level, idle) in steps {
            w.change(t0 + ms(at), delta);
            assert_eq!(w.level(), level, "at {at} ms");
            assert_eq!(w.idle_since(), idle.map(|i| t0 + ms(i)), "at {at} ms");
        }
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let t0 = Instant::now();
        let mut w = Window::new(t0 + secs(1), secs(1), secs(60));
        // Before the origin: treated as the origin.
        w.change(t0, 2);
        w.change(t0 + secs(6), 1);
        // Earlier than the last change: treated as t0 + 6 s.
        w.change(t0 + secs(4), -1);
        w.arrival(t0 + secs(2));
        assert_eq!(w.level(), 2);
        // Level 2 throughout 10 s since the origin (t0 + 1 s).
        assert!(close(
            w.average_concurrency(t0 + secs(11), secs(10)),
            Some(2.0)
        ));
        // A query in the past answers as of the latest instant seen.
        assert!(close(
            w.average_concurrency(t0 + secs(3), secs(10)),
            Some(2.0)
        ));
        assert!(close(w.arrival_rate(t0, secs(10)), Some(0.1)));
        // Dropping to 0 "in the past" records the latest instant seen.
        w.change(t0 + secs(5), -2);
        assert_eq!(w.idle_since(), Some(t0 + secs(11)));
    }
}
