//! `predictive`: surge's own keep-alive policy. It sorts each function into a pattern, as
//! SPES (2024) does, and treats each on its own terms, against one stated cost:
//! `cold_start_cost × cold starts + memory_cost × GB-s loaded and idle`.
//!
//! - **Periodic** (a timer): the last few idle times agree within a tick or a tenth. The
//!   instance is pre-warmed just before the next expected arrival and unloaded just after
//!   it, so a timer costs a tick or two of memory per period instead of a whole keep-alive.
//!   Its margin is fed back: a miss widens it by a tick, a long run of hits narrows it.
//!   And the pre-warm itself is fed back: each idle time is scored, in hindsight, under
//!   the pre-warm window and under the keep-alive; the window is used only while its
//!   running gain over the keep-alive is not negative. A timer's window saves its idle
//!   span at each firing; a run of look-alike gaps in random traffic (four Poisson gaps
//!   within a tenth of each other happen, in a busy day) costs a cold start at its first
//!   miss, and is not trusted again until hits have paid that back.
//! - **Otherwise** it keeps the instance for the break-even time of the stated cost, the
//!   deterministic ski-rental rule: as long as an idle instance costs what a cold start
//!   does. That is `cold_start_cost ÷ (memory_cost × the function's GB)`, so a large
//!   function is kept for less time than a small one.
//! - **Feedback**: every idle time seen is scored, in hindsight, against a ladder of
//!   keep-alives around the break-even (¼× to 4×): warm and the idle time wasted, or cold
//!   and the whole keep-alive wasted. The policy moves to the rung with the least total
//!   cost once it leads the current one by more than [`EVIDENCE`] cold starts' worth, so
//!   a sparse function (every idle time past the keep-alive) stops holding memory it never
//!   uses, and a dense one with rare long gaps keeps a longer one.
//!
//! Why not the least-cost window over the function's own idle-time distribution? We built
//! it (`cost:<w>`, on the Azure sample): it fitted early idle times too closely, and lost to
//! a plain fixed keep-alive at equal waste. Idle times are not independent draws; the next
//! long gap is likelier than the history says. BENCHMARKS.md has the numbers.
//!
//! Units: ticks, the policy's time step (a minute on the minute model; the host's
//! `[keepalive] tick` live). Costs are in ticks of this function's idle memory: one cold
//! start costs `break_even` of them.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::policy::{KeepAlive, Pattern, Windows};

/// Idle times that must agree before a function counts as periodic.
const PERIOD_RUN: usize = 4;
/// Shortest idle time (ticks) handled as a timer: below it a keep-alive over the whole gap
/// costs as little as the margins of a pre-warm window, without its risk.
const MIN_PERIOD: u32 = 5;
/// How far apart (a fraction of the shortest) the run's idle times may be.
const PERIOD_TOLERANCE: f64 = 0.1;
/// The pre-warm window's margin, ticks, each side of the run's range.
const MARGIN: (u32, u32) = (1, 3);
/// Hits in a row that narrow the margin by a tick.
const NARROW_AFTER: u32 = 8;
/// The keep-alive ladder, multiples of the break-even.
const LADDER: [f64; 5] = [0.25, 0.5, 1.0, 2.0, 4.0];
const BREAK_EVEN_RUNG: usize = 2;
/// Cold starts' worth of hindsight cost by which another rung must lead to be taken.
pub const EVIDENCE: f64 = 4.0;
/// Recent idle times kept (for the pattern).
const RECENT: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Ticks of this function's memory that one cold start is worth.
    pub break_even: f64,
    /// The longest keep-alive, ticks (live: `scale_to_zero_after`).
    pub max_keepalive: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Predictive {
    params: Params,
    /// The ladder's keep-alives, ticks, and the hindsight cost of each so far.
    rungs: Vec<u32>,
    losses: Vec<f64>,
    rung: usize,
    recent: VecDeque<u32>,
    /// The run that made the function periodic: its shortest and longest idle time.
    period: Option<(u32, u32)>,
    margin: u32,
    hits: u32,
    /// Σ over the idle times seen under a run, in hindsight: the keep-alive's cost less the
    /// pre-warm window's. The window is used while this is not negative.
    #[serde(default)]
    periodic_gain: f64,
}

impl Predictive {
    pub fn new(params: Params) -> Self {
        let cap = params.max_keepalive.max(1);
        let rungs = LADDER
            .iter()
            .map(|m| (params.break_even * m).round().clamp(1.0, cap as f64) as u32)
            .collect::<Vec<_>>();
        Predictive {
            losses: vec![0.0; rungs.len()],
            rungs,
            rung: BREAK_EVEN_RUNG,
            params,
            recent: VecDeque::with_capacity(RECENT),
            period: None,
            margin: MARGIN.0,
            hits: 0,
            periodic_gain: 0.0,
        }
    }

    /// The keep-alive outside a period, ticks.
    pub fn keepalive(&self) -> u32 {
        self.rungs[self.rung]
    }

    /// The pre-warm window of the current run, used or not.
    fn prewarm_window(&self) -> Option<Windows> {
        let (lo, hi) = self.period?;
        let prewarm = lo.saturating_sub(self.margin);
        Some(Windows {
            prewarm,
            keepalive: hi + self.margin - prewarm + 1,
        })
    }

    /// Whether the pre-warm window is in use: a run, and no net loss from it so far.
    fn trusted(&self) -> bool {
        self.period.is_some() && self.periodic_gain >= 0.0
    }

    fn periodic_run(&self) -> Option<(u32, u32)> {
        if self.recent.len() < PERIOD_RUN {
            return None;
        }
        let run = self.recent.iter().rev().take(PERIOD_RUN);
        let (lo, hi) = run.fold((u32::MAX, 0), |(lo, hi), &g| (lo.min(g), hi.max(g)));
        let tolerance = (PERIOD_TOLERANCE * lo as f64).max(1.0);
        (lo >= MIN_PERIOD && (hi - lo) as f64 <= tolerance).then_some((lo, hi))
    }
}

impl KeepAlive for Predictive {
    fn observe_idle(&mut self, ticks: u32) {
        // Feedback on the pre-warm window: was this arrival inside it, and did the window
        // (used or not) do better than the keep-alive would have?
        if let Some(w) = self.prewarm_window() {
            let (g, be) = (ticks as f64, self.params.break_even);
            let k = self.keepalive();
            let window = if ticks < w.prewarm {
                be
            } else if ticks < w.prewarm + w.keepalive {
                g - w.prewarm as f64
            } else {
                be + w.keepalive as f64
            };
            let keepalive = if ticks < k { g } else { be + k as f64 };
            self.periodic_gain += keepalive - window;
            if ticks < w.prewarm || ticks >= w.prewarm + w.keepalive {
                self.margin = (self.margin + 1).min(MARGIN.1);
                self.hits = 0;
            } else {
                self.hits += 1;
                if self.hits >= NARROW_AFTER {
                    self.margin = (self.margin - 1).max(MARGIN.0);
                    self.hits = 0;
                }
            }
        }
        // Feedback on the keep-alive: every rung scored on this idle time, in hindsight.
        let g = ticks as f64;
        for (loss, &k) in self.losses.iter_mut().zip(&self.rungs) {
            *loss += if ticks < k {
                g
            } else {
                self.params.break_even + k as f64
            };
        }
        let best = (0..self.rungs.len())
            .min_by(|&a, &b| self.losses[a].total_cmp(&self.losses[b]))
            .unwrap_or(self.rung);
        if self.losses[best] < self.losses[self.rung] - EVIDENCE * self.params.break_even {
            self.rung = best;
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(ticks);
        self.period = self.periodic_run();
    }

    fn windows(&self) -> Windows {
        match self.prewarm_window() {
            Some(w) if self.trusted() => w,
            _ => Windows {
                prewarm: 0,
                keepalive: self.keepalive(),
            },
        }
    }

    fn pattern(&self) -> Pattern {
        if self.trusted() {
            return Pattern::Periodic;
        }
        if self.recent.len() < PERIOD_RUN {
            return Pattern::New;
        }
        let k = self.keepalive();
        if self.recent.iter().all(|&g| g >= k) {
            Pattern::Sparse
        } else if self.recent.iter().filter(|&&g| g == 0).count() * 2 >= self.recent.len() {
            Pattern::Dense
        } else {
            Pattern::Irregular
        }
    }

    fn next_arrival(&self) -> Option<u32> {
        let (lo, hi) = self.period.filter(|_| self.trusted())?;
        Some((lo + hi).div_ceil(2))
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(break_even: f64) -> Predictive {
        Predictive::new(Params {
            break_even,
            max_keepalive: 240,
        })
    }

    #[test]
    fn a_timer_is_prewarmed_just_before_it_fires_and_unloaded_just_after() {
        let mut p = policy(60.0);
        assert_eq!(
            p.windows(),
            Windows {
                prewarm: 0,
                keepalive: 60
            }
        );
        assert_eq!(p.pattern(), Pattern::New);
        for _ in 0..PERIOD_RUN {
            p.observe_idle(29);
        }
        // Every 30 ticks: loaded from 28 to 30 after each activity, not 60 ticks.
        assert_eq!(p.pattern(), Pattern::Periodic);
        assert_eq!(
            p.windows(),
            Windows {
                prewarm: 28,
                keepalive: 3
            }
        );
        assert_eq!(p.next_arrival(), Some(29));
        // A late arrival is a miss: the margin widens by a tick, and the window, which did
        // worse than the keep-alive on it (a cold start against 31 ticks), is set aside.
        p.observe_idle(31);
        let keepalive = Windows {
            prewarm: 0,
            keepalive: 60,
        };
        assert_eq!(p.windows(), keepalive);
        // Hits pay it back (two, at 27 ticks saved each), and a run of them narrows it.
        p.observe_idle(30);
        p.observe_idle(30);
        let wide = Windows {
            prewarm: 27,
            keepalive: 7,
        };
        assert_eq!(p.windows(), wide);
        for _ in 2..NARROW_AFTER {
            p.observe_idle(30);
        }
        let narrow = Windows {
            prewarm: 29,
            keepalive: 3,
        };
        assert_eq!(p.windows(), narrow);
        // An idle time off the period ends the pattern: back to the keep-alive.
        p.observe_idle(3);
        assert_eq!(p.pattern(), Pattern::Irregular);
        assert_eq!(
            p.windows(),
            Windows {
                prewarm: 0,
                keepalive: 60
            }
        );
    }

    /// Look-alike gaps in random traffic: a run, then a miss well inside the keep-alive.
    /// The window's hindsight loss (a cold start) stops its use until hits pay it back.
    #[test]
    fn a_run_that_misses_is_not_trusted_until_it_pays_back() {
        let mut p = policy(60.0);
        for g in [20, 21, 20, 21] {
            p.observe_idle(g);
        }
        assert_eq!(p.pattern(), Pattern::Periodic);
        p.observe_idle(3); // cold under the window (before it), warm under the keep-alive
        for g in [20, 21, 20] {
            p.observe_idle(g);
        }
        // No run while the 3 is among the last four; the miss cost 57 more than the
        // keep-alive would have.
        assert!(p.periodic_gain < 0.0, "{}", p.periodic_gain);
        assert_eq!(
            p.windows(),
            Windows {
                prewarm: 0,
                keepalive: 60
            }
        );
        for _ in 0..5 {
            p.observe_idle(20);
        }
        assert!(p.periodic_gain >= 0.0, "{}", p.periodic_gain);
        assert_eq!(p.pattern(), Pattern::Periodic);
    }

    #[test]
    fn short_periods_are_kept_alive_not_prewarmed() {
        let mut p = policy(60.0);
        for _ in 0..10 {
            p.observe_idle(MIN_PERIOD - 1);
        }
        assert_eq!(p.windows().prewarm, 0);
        assert_ne!(p.pattern(), Pattern::Periodic);
    }

    /// The feedback converges: a function whose idle times all lie beyond the break-even
    /// keep-alive ends on the shortest rung (it wasted a keep-alive on every one); one whose
    /// idle times fall just past it ends on a longer one, which catches them.
    #[test]
    fn feedback_finds_the_cheapest_keepalive_in_hindsight() {
        let mut sparse = policy(20.0);
        let mut near = policy(60.0);
        let mut steps = Vec::new();
        for i in 0..40u32 {
            sparse.observe_idle(300 + (i * 97) % 400);
            near.observe_idle(65 + i % 10); // 65..74: past 60, inside 120
            steps.push(near.keepalive());
        }
        assert_eq!(sparse.keepalive(), 5, "¼ of the break-even");
        assert_eq!(sparse.pattern(), Pattern::Sparse);
        assert_eq!(near.keepalive(), 120, "2× the break-even catches 65..74");
        // It moved once evidence passed the threshold, and then stayed.
        let first = steps.iter().position(|&k| k == 120).unwrap();
        assert!(
            first > 0 && steps[first..].iter().all(|&k| k == 120),
            "{steps:?}"
        );
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut p = policy(30.0);
        for g in [0, 0, 5, 40, 0, 12] {
            p.observe_idle(g);
        }
        let back: Predictive = serde_json::from_value(p.save()).unwrap();
        assert_eq!(back, p);
    }
}
