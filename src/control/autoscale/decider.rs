//! The horizontal decider (KPA-class), pure.
//!
//! A deterministic function of (observation, params, now) → decision. State
//! carried between calls lives only in the `Decider`: when panic mode was
//! last (re)entered, the panic ratchet, and the scale-down delay window. The
//! same code drives the live host and simulations; names and defaults follow
//! Knative's KPA where they exist. Nothing here reads a clock.

use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// Tolerance when rounding desires up, so float dust does not add an instance.
const CEIL_EPSILON: f64 = 1e-9;

#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub min_instances: u32,
    pub max_instances: u32,
    /// In-flight requests one instance serves at once (0 is treated as 1).
    pub concurrency: u32,
    /// Fraction of `concurrency` to aim for, (0, 1].
    pub target_utilization: f64,
    /// Window of the stable average; also how long panic lasts after the
    /// last over-threshold decision. Default 60 s.
    pub stable_window: Duration,
    /// Window of the panic average. Default 6 s.
    pub panic_window: Duration,
    /// Panic when the panic-window desire is at least this many times the
    /// ready instances. Default 2.0.
    pub panic_threshold: f64,
    /// Most a decision may multiply the ready instances by (ready counted as
    /// at least 1). Default 1000.0.
    pub max_scale_up_rate: f64,
    /// Most a decision may divide the ready instances by. Default 2.0.
    pub max_scale_down_rate: f64,
    /// A scale-down takes effect only after the desire stayed lower for this
    /// long (max over the window). Default 0.
    pub scale_down_delay: Duration,
    /// No traffic (level 0) for this long → zero instances (or
    /// `min_instances`). Default 60 s.
    pub scale_to_zero_after: Duration,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            min_instances: 0,
            max_instances: 10,
            concurrency: 1,
            target_utilization: 0.7,
            stable_window: Duration::from_secs(60),
            panic_window: Duration::from_secs(6),
            panic_threshold: 2.0,
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            scale_down_delay: Duration::ZERO,
            scale_to_zero_after: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    /// Average level over the stable window, requests; None: not enough data.
    pub stable_concurrency: Option<f64>,
    /// Average level over the panic window, requests; None: not enough data.
    pub panic_concurrency: Option<f64>,
    /// Requests inside now (executing + queued).
    pub current: u64,
    /// When the level last became 0; None while requests are inside.
    pub idle_since: Option<Instant>,
    /// Instances ready to serve now.
    pub ready: u32,
    /// While idle: when the keep-alive policy wants an instance loaded. None: the KPA's
    /// rule, loaded until `scale_to_zero_after` of idleness.
    pub keep: Option<KeepWarm>,
    /// The instances the load forecast for the next bucket needs (a busy function only):
    /// a floor, ahead of a ramp.
    pub forecast_floor: Option<u32>,
}

/// The span of an idle function's time in which the keep-alive policy wants one instance
/// loaded: `[from, until)`. Before `from` (a pre-warm still ahead) and from `until` on,
/// it wants none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepWarm {
    pub from: Instant,
    pub until: Instant,
}

impl KeepWarm {
    pub fn holds(&self, now: Instant) -> bool {
        self.from <= now && now < self.until
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Stable,
    Panic,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Stable => "stable",
            Mode::Panic => "panic",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so the status table's widths apply.
        f.pad(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The windows hold too little to decide on: keep the current size.
    NotEnoughData,
    Desired {
        instances: u32,
        mode: Mode,
    },
}

/// Horizontal scaling state of one function.
#[derive(Clone, Debug)]
pub struct Decider {
    params: Params,
    /// Last decision that was over the panic threshold; None: stable mode.
    panic_since: Option<Instant>,
    /// Highest desire while in panic (never lowered until panic ends).
    max_panic: u32,
    /// (decided at, desire) within the last `scale_down_delay`.
    recent: VecDeque<(Instant, u32)>,
}

/// `ceil(x)` with a small tolerance, never negative, saturating at u32::MAX.
fn ceil_tolerant(x: f64) -> u32 {
    if x > 0.0 {
        // `as` saturates (and maps NaN to 0).
        (x - CEIL_EPSILON).ceil().max(0.0) as u32
    } else {
        0
    }
}

fn clamp(v: u32, lo: u32, hi: u32) -> u32 {
    v.max(lo).min(hi)
}

impl Decider {
    pub fn new(params: Params) -> Self {
        Decider {
            params,
            panic_since: None,
            max_panic: 0,
            recent: VecDeque::new(),
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The floor in force now (in a cluster, this node's part of the function's).
    pub fn set_min_instances(&mut self, n: u32) {
        self.params.min_instances = n;
    }

    pub fn mode(&self) -> Mode {
        if self.panic_since.is_some() {
            Mode::Panic
        } else {
            Mode::Stable
        }
    }

    /// One decision at `now`. See the module doc; order of the rules:
    /// not-enough-data, desires, rate limits, panic, scale-down delay, zero,
    /// min/max clamp.
    pub fn decide(&mut self, obs: &Observation, now: Instant) -> Decision {
        let p = &self.params;
        let concurrency = u64::from(p.concurrency.max(1));
        // What is inside right now (executing + queued). The averages lag a step by up to
        // a window; this does not. While requests queue behind ready instances it takes the
        // same headroom as the averages, so the pool grows geometrically (×1/utilization per
        // decision) instead of by one instance per queued request. At zero, or with no queue,
        // it is exact: a lone request at zero starts one instance, not two.
        let immediate = {
            let exact = obs.current.div_ceil(concurrency);
            let queueing = obs.ready > 0 && obs.current > u64::from(obs.ready) * concurrency;
            if queueing {
                let per = concurrency as f64 * p.target_utilization.clamp(f64::MIN_POSITIVE, 1.0);
                ceil_tolerant(obs.current as f64 / per)
            } else {
                u32::try_from(exact).unwrap_or(u32::MAX)
            }
        };

        // 1. Not enough data, unless requests wait at zero.
        let (Some(stable), Some(panic)) = (obs.stable_concurrency, obs.panic_concurrency) else {
            if obs.current > 0 && obs.ready == 0 {
                let instances = clamp(immediate, p.min_instances.max(1), p.max_instances);
                return Decision::Desired {
                    instances,
                    mode: Mode::Stable,
                };
            }
            return Decision::NotEnoughData;
        };

        // 2. Desires: the averages with headroom, at least what is inside now.
        let per_instance = concurrency as f64 * p.target_utilization;
        let want = |avg: f64| {
            let w = if per_instance > 0.0 {
                ceil_tolerant(avg / per_instance)
            } else {
                ceil_tolerant(avg / concurrency as f64)
            };
            w.max(immediate)
        };
        let raw_stable = want(stable);
        let raw_panic = want(panic);

        // 3. Rate limits relative to the ready instances.
        let base = obs.ready.max(1);
        let up = (f64::from(base) * p.max_scale_up_rate).ceil() as u32;
        let down = (f64::from(obs.ready) / p.max_scale_down_rate).floor() as u32;
        let down = down.min(up);
        let want_stable = clamp(raw_stable, down, up);
        let want_panic = clamp(raw_panic, down, up);

        // 4. Panic, as Knative: the threshold compares the panic desire before
        // rate limiting with the ready instances.
        let over = f64::from(raw_panic) / f64::from(base) >= p.panic_threshold;
        if over {
            self.panic_since = Some(now);
        } else if let Some(since) = self.panic_since {
            if now >= since + p.stable_window {
                self.panic_since = None;
                self.max_panic = 0;
            }
        }
        let mut desired = if self.panic_since.is_some() {
            self.max_panic = self.max_panic.max(want_panic);
            self.max_panic
        } else {
            want_stable
        };

        // 5. Scale-down delay: the max desire over the last `scale_down_delay`.
        if !p.scale_down_delay.is_zero() {
            let delay = p.scale_down_delay;
            self.recent.push_back((now, desired));
            self.recent
                .retain(|&(at, _)| now.saturating_duration_since(at) <= delay);
            desired = self.recent.iter().map(|&(_, d)| d).max().unwrap_or(desired);
        }

        // 5b. The forecast's floor, within the rate limit: the instances the next bucket's
        // predicted load needs, before the windows see it.
        if let Some(f) = obs.forecast_floor {
            desired = desired.max(f.min(up));
        }

        // 6. Idle: zero after a full grace period (or outside the keep-alive policy's
        // span), one instance inside it, even from zero (a pre-warm).
        let idle = obs.current == 0 && obs.idle_since.is_some();
        let zero = idle
            && match (obs.keep, obs.idle_since) {
                (Some(k), _) => !k.holds(now),
                (None, Some(t)) => now.saturating_duration_since(t) >= p.scale_to_zero_after,
                (None, None) => false,
            };
        if zero {
            desired = 0;
            self.panic_since = None;
            self.max_panic = 0;
            self.recent.clear();
        } else if desired == 0
            && (obs.ready > 0 || obs.current > 0 || obs.keep.is_some_and(|k| k.holds(now)))
        {
            desired = 1;
        }

        // 7. Bounds.
        Decision::Desired {
            instances: clamp(desired, p.min_instances, p.max_instances),
            mode: self.mode(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Both windows at `avg`; `idle` applies only when nothing is inside.
    fn obs(avg: f64, current: u64, ready: u32, idle: Option<Instant>) -> Observation {
        Observation {
            stable_concurrency: Some(avg),
            panic_concurrency: Some(avg),
            current,
            idle_since: if current == 0 { idle } else { None },
            ready,
            keep: None,
            forecast_floor: None,
        }
    }

    /// The forecast's floor raises the pool ahead of the windows, within the rate limit,
    /// and never stops a scale to zero.
    #[test]
    fn the_forecast_floor_raises_the_pool_ahead_of_the_windows() {
        let t0 = Instant::now();
        let mut d = Decider::new(Params {
            max_instances: 50,
            ..Params::default()
        });
        let ahead = |floor, avg, ready| Observation {
            forecast_floor: Some(floor),
            ..obs(avg, 1, ready, None)
        };
        // The windows ask for 2 (1.4 / 0.7); the forecast needs 6.
        assert_eq!(d.decide(&ahead(6, 1.4, 2), t0), desired(6, Mode::Stable));
        // Below the windows' desire, the floor changes nothing.
        assert_eq!(d.decide(&ahead(1, 1.4, 2), t0), desired(2, Mode::Stable));
        // Idle past scale_to_zero_after: zero, whatever the floor.
        let idle = Observation {
            forecast_floor: Some(3),
            ..obs(0.0, 0, 1, Some(t0))
        };
        assert_eq!(d.decide(&idle, t0 + secs(61)), desired(0, Mode::Stable));
    }

    /// The keep-alive policy's span: zero before a pre-warm, one inside it (from zero
    /// too), zero after it, whatever `scale_to_zero_after` says; a request inside always
    /// counts.
    #[test]
    fn an_idle_function_follows_the_keep_alive_span() {
        let t0 = Instant::now();
        let mut d = Decider::new(Params::default());
        let keep = KeepWarm {
            from: t0 + secs(20),
            until: t0 + secs(23),
        };
        let at = |ready, current, idle| Observation {
            keep: Some(keep),
            ..obs(0.0, current, ready, idle)
        };
        for (s, ready, current, want) in [
            (1, 1, 0, 0),  // just idle, pre-warm ahead: unload now, not after 60 s
            (10, 0, 0, 0), // at zero before the span
            (20, 0, 0, 1), // the pre-warm, from zero
            (22, 1, 0, 1),
            (23, 1, 0, 0), // the span is over
            (30, 0, 1, 1), // a request inside counts whatever the span says
        ] {
            let got = d.decide(&at(ready, current, Some(t0)), t0 + secs(s));
            assert_eq!(got, desired(want, Mode::Stable), "at {s} s");
        }
    }

    fn desired(instances: u32, mode: Mode) -> Decision {
        Decision::Desired { instances, mode }
    }

    #[test]
    fn single_decisions() {
        use Mode::*;
        let t0 = Instant::now();
        let now = t0 + secs(100);
        let max50 = Params {
            max_instances: 50,
            ..Params::default()
        };
        let min2 = Params {
            min_instances: 2,
            ..Params::default()
        };
        let none = |current, ready| Observation {
            stable_concurrency: None,
            panic_concurrency: None,
            current,
            idle_since: None,
            ready,
            keep: None,
            forecast_floor: None,
        };
        let cases: Vec<(&str, Params, Observation, Decision)> = vec![
            (
                "steady 7 at concurrency 1 / 0.7 → 10",
                Params::default(),
                obs(7.0, 7, 10, None),
                desired(10, Stable),
            ),
            (
                "float dust: 8.4 / 0.7 = 12.000000000000002 → 12, not 13",
                Params {
                    max_instances: 20,
                    ..Params::default()
                },
                obs(8.4, 8, 12, None),
                desired(12, Stable),
            ),
            (
                "steady 7 from 7 ready grows to 10 without panic",
                Params::default(),
                obs(7.0, 7, 7, None),
                desired(10, Stable),
            ),
            (
                "concurrency 10 / 0.7: 21 in flight → 3",
                Params {
                    concurrency: 10,
                    ..Params::default()
                },
                obs(21.0, 21, 3, None),
                desired(3, Stable),
            ),
            (
                "what is inside now needs instances even if the average is low",
                Params::default(),
                obs(0.5, 4, 4, None),
                desired(4, Stable),
            ),
            (
                "a queue behind the ready instances takes headroom: 6 inside, 2 ready → 9",
                Params::default(),
                obs(0.5, 6, 2, None),
                desired(9, Panic),
            ),
            (
                "step down limited by max_scale_down_rate: 10 ready → 5",
                Params::default(),
                obs(1.0, 1, 10, None),
                desired(5, Stable),
            ),
            (
                "max caps a burst (which panics)",
                Params::default(),
                obs(70.0, 70, 10, None),
                desired(10, Panic),
            ),
            (
                "scale-up rate limit: 1 ready, rate 3 → 3",
                Params {
                    max_scale_up_rate: 3.0,
                    max_instances: 100,
                    ..Params::default()
                },
                obs(70.0, 70, 1, None),
                desired(3, Panic),
            ),
            (
                "min 2 keeps 2 during the idle grace period",
                min2.clone(),
                obs(0.0, 0, 2, Some(now - secs(10))),
                desired(2, Stable),
            ),
            (
                "min 2 keeps 2 after the idle grace period",
                min2.clone(),
                obs(0.0, 0, 2, Some(t0)),
                desired(2, Stable),
            ),
            (
                "idle but within grace: keep one warm",
                Params::default(),
                obs(0.0, 0, 1, Some(now - secs(59))),
                desired(1, Stable),
            ),
            (
                "idle for scale_to_zero_after → 0",
                Params::default(),
                obs(0.0, 0, 1, Some(now - secs(60))),
                desired(0, Stable),
            ),
            (
                "not enough data",
                Params::default(),
                none(3, 2),
                Decision::NotEnoughData,
            ),
            (
                "not enough data, nothing anywhere",
                Params::default(),
                none(0, 0),
                Decision::NotEnoughData,
            ),
            (
                "not enough data but requests wait at zero",
                Params::default(),
                none(3, 0),
                desired(3, Stable),
            ),
            (
                "not enough data, 1 waiting at zero with concurrency 10 → 1",
                Params {
                    concurrency: 10,
                    ..Params::default()
                },
                none(1, 0),
                desired(1, Stable),
            ),
            (
                "zero to N: 50 waiting, no data, clamps to max",
                Params::default(),
                none(50, 0),
                desired(10, Stable),
            ),
            (
                "zero to N: 50 waiting with data panics, clamps to max",
                Params::default(),
                obs(0.0, 50, 0, None),
                desired(10, Panic),
            ),
            (
                "zero to N: 50 waiting, max 50",
                max50,
                obs(0.0, 50, 0, None),
                desired(50, Panic),
            ),
        ];
        for (name, params, o, want) in cases {
            let mut d = Decider::new(params);
            assert_eq!(d.decide(&o, now), want, "{name}");
        }
    }

    /// (s after t0, stable avg, panic avg, current, ready, want instances, want mode)
    type Step = (u64, f64, f64, u64, u32, u32, Mode);

    fn run(params: Params, steps: &[Step]) {
        let t0 = Instant::now();
        let mut d = Decider::new(params);
        for &(at, stable, panic, current, ready, want, mode) in steps {
            let o = Observation {
                stable_concurrency: Some(stable),
                panic_concurrency: Some(panic),
                current,
                idle_since: None,
                ready,
                keep: None,
                forecast_floor: None,
            };
            let got = d.decide(&o, t0 + secs(at));
            assert_eq!(got, desired(want, mode), "at {at} s");
            assert_eq!(d.mode(), mode, "at {at} s");
        }
    }

    #[test]
    fn panic_enters_ratchets_and_ends_after_stable_window() {
        use Mode::*;
        let params = Params {
            max_instances: 100,
            ..Params::default()
        };
        run(
            params,
            &[
                (0, 1.0, 1.0, 1, 2, 2, Stable),
                // Burst: panic desire 15 ≥ 2 × 2 ready.
                (1, 2.0, 10.0, 10, 2, 15, Panic),
                // Panic average falls: the desire holds at 15.
                (2, 3.0, 5.0, 3, 15, 15, Panic),
                (30, 3.0, 2.0, 2, 15, 15, Panic),
                (60, 3.0, 2.0, 2, 15, 15, Panic),
                // 60 s after the last over-threshold decision: stable, rate-limited to 15 / 2.
                (61, 3.0, 2.0, 2, 15, 7, Stable),
                (62, 3.0, 2.0, 2, 7, 5, Stable),
            ],
        );
        // Panic extended by a second burst, ratcheting higher.
        run(
            Params {
                max_instances: 100,
                ..Params::default()
            },
            &[
                (0, 1.0, 10.0, 10, 2, 15, Panic),
                (10, 3.0, 3.0, 3, 15, 15, Panic),
                (20, 5.0, 40.0, 40, 15, 58, Panic),
                (30, 5.0, 20.0, 20, 58, 58, Panic),
                (61, 5.0, 3.0, 3, 58, 58, Panic),
                (79, 5.0, 3.0, 3, 58, 58, Panic),
                (80, 5.0, 3.0, 3, 58, 29, Stable),
            ],
        );
    }

    #[test]
    fn scale_down_delay_holds_the_max() {
        use Mode::*;
        let params = Params {
            scale_down_delay: secs(10),
            ..Params::default()
        };
        run(
            params,
            &[
                (0, 7.0, 7.0, 7, 10, 10, Stable),
                // Desire 5 (2 rate-limited to 10 / 2) is held at 10 for 10 s.
                (2, 1.4, 1.4, 1, 10, 10, Stable),
                (5, 1.4, 1.4, 1, 10, 10, Stable),
                (10, 1.4, 1.4, 1, 10, 10, Stable),
                (11, 1.4, 1.4, 1, 10, 5, Stable),
                // Rises apply at once; the lower desire 3 is held at 6.
                (12, 4.2, 4.2, 4, 5, 6, Stable),
                (13, 1.4, 1.4, 1, 6, 6, Stable),
            ],
        );
    }

    #[test]
    fn idle_to_zero_only_after_grace() {
        let t0 = Instant::now();
        let mut d = Decider::new(Params {
            max_instances: 100,
            scale_to_zero_after: secs(30),
            ..Params::default()
        });
        // A burst puts the decider in panic.
        assert_eq!(
            d.decide(&obs(10.0, 10, 1, None), t0),
            desired(15, Mode::Panic)
        );
        // Traffic stops at 1 s; zero after 30 s idle also ends the panic.
        // (s after t0, ready, want instances, want mode)
        let idle = Some(t0 + secs(1));
        for (at, ready, want, mode) in [
            (2, 15, 15, Mode::Panic),
            (30, 15, 15, Mode::Panic),
            (31, 15, 0, Mode::Stable),
        ] {
            let got = d.decide(&obs(0.0, 0, ready, idle), t0 + secs(at));
            assert_eq!(got, desired(want, mode), "at {at} s");
        }

        // From one instance without panic: ≥ 1 until the grace ends.
        let mut d = Decider::new(Params::default());
        let idle = Some(t0);
        for (at, want) in [(1, 1), (30, 1), (59, 1), (60, 0), (90, 0)] {
            let ready = if at < 60 { 1 } else { 0 };
            let got = d.decide(&obs(0.1, 0, ready, idle), t0 + secs(at));
            assert_eq!(got, desired(want, Mode::Stable), "at {at} s");
        }
        // A request arrives at zero.
        let got = d.decide(&obs(0.01, 1, 0, None), t0 + secs(91));
        assert_eq!(got, desired(1, Mode::Stable));
    }

    #[test]
    fn mode_names() {
        assert_eq!(Mode::Stable.as_str(), "stable");
        assert_eq!(Mode::Panic.as_str(), "panic");
        let d = Decider::new(Params::default());
        assert_eq!(d.mode(), Mode::Stable);
        assert_eq!(d.params(), &Params::default());
    }

    /// Window-free simulation: level 20 over [5 s, 40 s), 0 otherwise;
    /// decisions every second; ready = the previous decision.
    #[test]
    fn simulation_rises_falls_and_reaches_zero() {
        let params = Params {
            max_instances: 50,
            ..Params::default()
        };
        let (on, off, level) = (5.0, 40.0, 20.0);
        let level_at = |t: f64| if (on..off).contains(&t) { level } else { 0.0 };
        // Exact time-weighted average over (t - window, t], or since 0 if shorter.
        let avg = |t: f64, window: f64| {
            if t < 1.0 {
                return None;
            }
            let start = (t - window).max(0.0);
            let overlap = (t.min(off) - start.max(on)).max(0.0);
            Some(level * overlap / (t - start))
        };
        let t0 = Instant::now();
        let stable_w = params.stable_window.as_secs_f64();
        let panic_w = params.panic_window.as_secs_f64();
        let mut d = Decider::new(params);
        let mut ready = 0u32;
        let mut history = Vec::new();
        for s in 0..=120u64 {
            let t = s as f64;
            let current = level_at(t) as u64;
            let idle_since = if current > 0 {
                None
            } else if t >= off {
                Some(t0 + Duration::from_secs_f64(off))
            } else {
                Some(t0)
            };
            let o = Observation {
                stable_concurrency: avg(t, stable_w),
                panic_concurrency: avg(t, panic_w),
                current,
                idle_since,
                ready,
                keep: None,
                forecast_floor: None,
            };
            let want = match d.decide(&o, t0 + secs(s)) {
                Decision::NotEnoughData => ready,
                Decision::Desired { instances, .. } => instances,
            };
            history.push(want);
            ready = want;
        }
        // Nothing before the traffic.
        assert!(history[..5].iter().all(|&n| n == 0), "{history:?}");
        // Rises at once to what is inside, then to 20 / 0.7 within 10 s.
        assert_eq!(history[5], 20, "{history:?}");
        assert!(history[5..=15].iter().any(|&n| n >= 29), "{history:?}");
        // Falls back after the traffic: never rises, and is small before zero.
        assert!(
            history[41..].windows(2).all(|p| p[1] <= p[0]),
            "{history:?}"
        );
        assert!((1..=2).contains(&history[99]), "{history:?}");
        // Zero once idle for scale_to_zero_after (40 s + 60 s).
        assert!(history[100..].iter().all(|&n| n == 0), "{history:?}");
    }
}
