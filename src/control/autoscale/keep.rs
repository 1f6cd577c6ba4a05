//! The keep-alive policy of one live version: the same `control::keepalive` code as
//! `surge replay`, fed with the idle spans the data path records, and asked, while the
//! function is idle, when one instance should be loaded ([`KeepWarm`]). The decider follows
//! that span: zero before a pre-warm, one inside it (started from zero if need be), zero
//! after it. `scale_to_zero_after` stays the upper bound on how long an idle instance is
//! loaded.
//!
//! Time here is the policy's ticks (`[keepalive] tick`): an idle span of d counts as
//! ⌊d / tick⌋ ticks, and a window of P ticks of pre-warm and K of keep-alive loads the
//! instance from P·tick to (P + K)·tick after the function went idle. Nothing reads a
//! clock: `now` is a parameter.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::control::autoscale::decider::KeepWarm;
use crate::control::keepalive::{Fit, KeepAlive, Pattern, PolicySpec, Windows};
use crate::dispatch::load::Gap;
use crate::manifest::config::KeepAliveConfig;
use crate::manifest::sections::KeepAlivePolicy;
use crate::manifest::FunctionSpec;

/// The figures `surge status` and `/metrics` show.
#[derive(Clone, Debug, PartialEq)]
pub struct KeepStatus {
    pub policy: &'static str,
    pub pattern: Pattern,
    /// The windows after the last activity, in time.
    pub prewarm: Duration,
    pub keepalive: Duration,
    /// When the next arrival is expected, from now (None: no prediction, or not idle).
    pub next_arrival: Option<Duration>,
    /// The arrival rate the policy expects, per second (a timer's 1 ÷ period).
    pub forecast_rps: Option<f64>,
    /// Arrivals that found an instance only a pre-warm had loaded.
    pub avoided: u64,
}

pub struct LivePolicy {
    choice: KeepAlivePolicy,
    tick: Duration,
    /// `scale_to_zero_after`: the longest an idle instance stays loaded.
    bound: Duration,
    policy: Box<dyn KeepAlive>,
    /// The data path's idle spans read so far.
    gaps_seen: u64,
    /// An instance is loaded because of a pre-warm, and nothing has arrived since.
    prewarmed: bool,
    avoided: u64,
    /// The state changed since it was last saved.
    dirty: bool,
    /// The current idle span's plan, and when that idle span began.
    plan: Option<KeepWarm>,
    idle_since: Option<Instant>,
}

impl LivePolicy {
    /// The policy the manifest names, fitted to the function; `saved` is the state a
    /// previous host kept for it (ignored unless it is the same policy, fitted alike).
    pub fn new(fspec: &FunctionSpec, cfg: &KeepAliveConfig, saved: Option<&Value>) -> Self {
        Self::with(
            fspec.scaling.policy,
            fspec.limits.memory.0 as f64 / f64::from(1 << 20),
            cfg.tick.0,
            fspec.scaling.scale_to_zero_after.0,
            cfg.cold_start_gb_s(),
            saved,
        )
    }

    /// The same from its parts: the policy, the function's memory (MB), the tick, the bound
    /// on an idle instance's time loaded, and what a cold start is worth (GB-s). `policy`'s
    /// `Fixed` and `Predictive(Some(w))` also come through here (`surge replay --model live`).
    pub fn with(
        choice: KeepAlivePolicy,
        memory_mb: f64,
        tick: Duration,
        bound: Duration,
        cold_start_gb_s: f64,
        saved: Option<&Value>,
    ) -> Self {
        let tick = tick.max(Duration::from_millis(1));
        let max_keepalive = u32::try_from(bound.as_nanos().div_ceil(tick.as_nanos()))
            .unwrap_or(u32::MAX)
            .max(1);
        let fit = Fit {
            memory_mb,
            tick_seconds: tick.as_secs_f64(),
            max_keepalive,
            cold_start_gb_s,
        };
        let spec = match choice {
            KeepAlivePolicy::Predictive => PolicySpec::Predictive(None),
            KeepAlivePolicy::Hybrid => PolicySpec::Hybrid,
            KeepAlivePolicy::Fixed => PolicySpec::Fixed(max_keepalive),
        };
        let policy = match saved {
            Some(v) => spec.restore(&fit, v),
            None => spec.start(&fit),
        };
        LivePolicy {
            choice,
            tick,
            bound,
            policy,
            gaps_seen: 0,
            prewarmed: false,
            avoided: 0,
            dirty: false,
            plan: None,
            idle_since: None,
        }
    }

    fn ticks(&self, d: Duration) -> u32 {
        u32::try_from(d.as_nanos() / self.tick.as_nanos()).unwrap_or(u32::MAX)
    }

    fn span(&self, ticks: u32) -> Duration {
        self.tick.saturating_mul(ticks)
    }

    /// The data path's count of idle spans, to pass to `Deployment::idle_gaps`.
    pub fn gaps_seen(&self) -> u64 {
        self.gaps_seen
    }

    /// Learn from the idle spans that ended (`seen` is the count to ask after next time),
    /// then plan the idle span under way, if any: `idle_since` as the load window says,
    /// `lead` how long a start takes (a pre-warm begins that much early). None: the KPA's
    /// own rule applies (the `fixed` policy, or nothing idle).
    pub fn plan(
        &mut self,
        gaps: &[Gap],
        seen: u64,
        idle_since: Option<Instant>,
        lead: Duration,
        ready: u32,
        now: Instant,
    ) -> Option<KeepWarm> {
        for g in gaps {
            if g.warm && self.prewarmed {
                self.avoided += 1;
            }
            self.prewarmed = false;
            self.policy.observe_idle(self.ticks(g.idle));
            self.dirty = true;
        }
        self.gaps_seen = seen;
        self.idle_since = idle_since;
        let t0 = idle_since?;
        if self.choice == KeepAlivePolicy::Fixed {
            self.plan = None;
            return None;
        }
        let w = self.policy.windows();
        let start = t0 + self.span(w.prewarm);
        let from = if w.prewarm == 0 {
            t0
        } else {
            start.checked_sub(lead + self.tick).unwrap_or(t0).max(t0)
        };
        let until = (start + self.span(w.keepalive)).min(from + self.bound);
        let keep = KeepWarm { from, until };
        // An instance loaded now, inside a pre-warm, with none ready: this plan starts it.
        if w.prewarm > 0 && keep.holds(now) && ready == 0 {
            self.prewarmed = true;
        }
        if now >= until {
            self.prewarmed = false;
        }
        self.plan = Some(keep);
        Some(keep)
    }

    /// The next instant the plan changes what the decider wants (its start or end).
    pub fn next_edge(&self, now: Instant) -> Option<Instant> {
        let k = self.plan?;
        self.idle_since?;
        [k.from, k.until].into_iter().find(|&t| t > now)
    }

    pub fn status(&self, now: Instant) -> KeepStatus {
        let Windows { prewarm, keepalive } = self.policy.windows();
        let next = self.policy.next_arrival();
        KeepStatus {
            policy: self.choice.as_str(),
            pattern: self.policy.pattern(),
            prewarm: self.span(prewarm),
            keepalive: self.span(keepalive).min(self.bound),
            next_arrival: match (next, self.idle_since) {
                (Some(n), Some(t0)) => {
                    // The middle of the expected tick.
                    let at = t0 + self.span(n) + self.tick / 2;
                    Some(at.saturating_duration_since(now))
                }
                _ => None,
            },
            forecast_rps: next.map(|n| 1.0 / (self.span(n) + self.tick / 2).as_secs_f64()),
            avoided: self.avoided,
        }
    }

    /// Whether the state changed since the last call.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The state to store: (the policy as the manifest names it, its state; null for a
    /// stateless one).
    pub fn saved(&self) -> (String, Value) {
        (self.choice.as_str().to_string(), self.policy.save())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::config::HostConfig;

    fn spec(policy: KeepAlivePolicy, scale_to_zero_after: Duration) -> FunctionSpec {
        let text = "name = \"t\"\nhandler = \"t.wasm\"\n";
        let mut s = crate::manifest::FunctionSpec::parse(
            std::path::Path::new("function.toml"),
            text,
            &HostConfig::embedded().defaults,
        )
        .unwrap();
        s.scaling.policy = policy;
        s.scaling.scale_to_zero_after = crate::manifest::units::Span(scale_to_zero_after);
        s
    }

    fn gap(ms: u64, warm: bool) -> Gap {
        Gap {
            idle: Duration::from_millis(ms),
            warm,
        }
    }

    /// A timer every 3 s with `scale_to_zero_after` at 2 s: after four idle spans the
    /// policy pre-warms just before the next arrival (a tick and the start's lead early),
    /// unloads just after it, and counts the warm arrival as a cold start avoided.
    #[test]
    fn a_timer_is_learnt_and_prewarmed_within_the_bound() {
        let cfg = HostConfig::embedded().keepalive;
        let tick = cfg.tick.0;
        let mut p = LivePolicy::new(
            &spec(KeepAlivePolicy::Predictive, Duration::from_secs(2)),
            &cfg,
            None,
        );
        let t0 = Instant::now();
        let lead = Duration::from_millis(20);
        // Before it has learnt anything: loaded for the bound, from the start of idleness.
        let k = p.plan(&[], 0, Some(t0), lead, 1, t0).unwrap();
        assert_eq!((k.from, k.until), (t0, t0 + Duration::from_secs(2)));
        let gaps: Vec<Gap> = (0..4).map(|i| gap(2_950 + i * 10, false)).collect();
        let k = p.plan(&gaps, 4, Some(t0), lead, 0, t0).unwrap();
        assert_eq!(p.status(t0).pattern, Pattern::Periodic);
        // Idle 29..=29 ticks: loaded from tick 28 (less lead and a tick) to tick 31.
        assert_eq!(k.from, t0 + tick * 28 - lead - tick);
        assert_eq!(k.until, t0 + tick * 31);
        assert_eq!(p.next_edge(t0), Some(k.from));
        assert_eq!(p.next_edge(k.from), Some(k.until));
        assert!(
            !k.holds(t0 + Duration::from_millis(100)),
            "unloaded in between"
        );
        let s = p.status(t0);
        assert_eq!(s.next_arrival, Some(tick * 29 + tick / 2));
        // Inside the pre-warm with nothing ready: this plan loads it; the next arrival
        // finds it warm, a cold start avoided.
        p.plan(&[], 4, Some(t0), lead, 0, k.from);
        p.plan(&[gap(2_990, true)], 5, None, lead, 1, k.from + tick * 2);
        assert_eq!(p.status(t0).avoided, 1);
        assert!(p.take_dirty());
        assert!(!p.take_dirty(), "saved once per change");
        assert_eq!(p.saved().0, "predictive");
    }

    #[test]
    fn fixed_leaves_the_decision_to_scale_to_zero_after() {
        let cfg = HostConfig::embedded().keepalive;
        let mut p = LivePolicy::new(
            &spec(KeepAlivePolicy::Fixed, Duration::from_secs(60)),
            &cfg,
            None,
        );
        let t0 = Instant::now();
        assert_eq!(
            p.plan(&[gap(10, true)], 1, Some(t0), Duration::ZERO, 1, t0),
            None
        );
        assert_eq!(p.status(t0).keepalive, Duration::from_secs(60));
        assert_eq!(p.saved().1, Value::Null, "a fixed keep-alive has no state");
    }
}
