//! One version's horizontal state: its decider, and the pool target the decider publishes
//! and the supervisor follows.

use parking_lot::Mutex;
use surge_runtime::Kind;
use tokio::sync::watch;
use tokio::time::Instant;

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::control::autoscale::ahead::Ahead;
use crate::control::autoscale::decider::{Decider, Decision, Mode, Observation, Params};
use crate::control::autoscale::keep::{KeepStatus, LivePolicy};
use crate::control::forecast::select::Forecaster;
use crate::dispatch::load::Gap;
use crate::dispatch::{per_instance, Deployment, Load};
use crate::manifest::FunctionSpec;

/// The horizontal decider's parameters for a function.
pub fn params(spec: &FunctionSpec, kind: Kind) -> Params {
    let s = &spec.scaling;
    Params {
        min_instances: s.min_instances,
        max_instances: s.max_instances,
        concurrency: per_instance(spec, kind),
        target_utilization: s.target_utilization,
        stable_window: s.stable_window.0,
        panic_window: s.panic_window.0,
        panic_threshold: s.panic_threshold,
        max_scale_up_rate: s.max_scale_up_rate,
        max_scale_down_rate: s.max_scale_down_rate,
        scale_down_delay: s.scale_down_delay.0,
        scale_to_zero_after: s.scale_to_zero_after.0,
    }
}

/// The pool's figures for `status` and `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolStatus {
    pub ready: u32,
    pub desired: u32,
    pub executing: u32,
    pub queued: u32,
    /// Requests that ever had to wait for an instance.
    pub queued_total: u64,
    /// Arrivals per second over the panic window.
    pub rps: f64,
    pub mode: Mode,
}

/// What one decision reads of a function: its load, its warm instances, the idle spans
/// that ended since the last decision, its request count, and how long a start takes.
pub struct Input<'a> {
    pub load: Load,
    pub ready: u32,
    pub gaps: &'a [Gap],
    /// The count of idle spans to ask after next time.
    pub gaps_seen: u64,
    pub requests: u64,
    pub lead: Duration,
    /// Asynchronous events due and not yet handed over: they count as requests waiting.
    pub backlog: u64,
}

/// One decision: the keep-alive policy learns from the idle spans and plans the current
/// one, the rate forecast sets its floor, the decider decides. The live loop
/// ([`Scaler::decide`]) and `surge replay --model live` both decide through this.
pub fn decide_with(
    decider: &mut Decider,
    keep: &mut LivePolicy,
    ahead: &mut Ahead,
    input: &Input<'_>,
    now: Instant,
) -> Decision {
    let load = &input.load;
    let planned = keep.plan(
        input.gaps,
        input.gaps_seen,
        load.idle_since,
        input.lead,
        input.ready,
        now,
    );
    ahead.observe(input.requests, now);
    // Little's law: how long a request stays inside, from the long window.
    let residence = match (load.long_average, load.long_rate) {
        (Some(c), Some(r)) if r > 0.0 => Some(c / r),
        _ => None,
    };
    let p = decider.params();
    let per_instance = f64::from(p.concurrency.max(1)) * p.target_utilization;
    let obs = Observation {
        stable_concurrency: load.long_average,
        panic_concurrency: load.short_average,
        current: load.current + input.backlog,
        idle_since: load.idle_since.filter(|_| input.backlog == 0),
        ready: input.ready,
        keep: planned,
        forecast_floor: ahead.floor(residence, per_instance),
    };
    decider.decide(&obs, now)
}

pub struct Scaler {
    decider: Mutex<Decider>,
    /// The keep-alive policy: when an idle function has an instance loaded.
    keep: Mutex<LivePolicy>,
    /// The arrival-rate forecast, and the floor it puts under the pool.
    ahead: Mutex<Ahead>,
    /// The autoscaler's target, watched by the supervisor.
    target: watch::Sender<u32>,
}

impl Scaler {
    pub fn new(params: Params, keep: LivePolicy, ahead: Ahead, initial: u32) -> Self {
        Scaler {
            decider: Mutex::new(Decider::new(params)),
            keep: Mutex::new(keep),
            ahead: Mutex::new(ahead),
            target: watch::Sender::new(initial),
        }
    }

    /// One decision at `now` for `d`: observe its load, let the keep-alive policy learn
    /// from the idle spans that ended and plan the current one, decide, publish the target.
    /// `lead` is how long a start takes (a pre-warm begins that much early).
    /// NotEnoughData leaves the target as it is.
    pub fn decide(&self, d: &Deployment, lead: Duration, now: Instant) -> Decision {
        let mut decider = self.decider.lock();
        decider.set_min_instances(d.min_instances());
        let p = decider.params();
        let load = d.load(now, p.stable_window, p.panic_window);
        let mut keep = self.keep.lock();
        let (gaps, seen) = d.idle_gaps(keep.gaps_seen());
        let input = Input {
            load,
            ready: d.ready(),
            gaps: &gaps,
            gaps_seen: seen,
            requests: d.counters.requests.load(Ordering::Relaxed),
            lead,
            backlog: d.backlog(),
        };
        let mut decision =
            decide_with(&mut decider, &mut keep, &mut self.ahead.lock(), &input, now);
        drop((decider, keep));
        // Provisioned concurrency is a floor, reserved concurrency a ceiling (Lambda's).
        let (least, most) = d.concurrency_bounds();
        decision = match decision {
            Decision::Desired { instances, mode } => Decision::Desired {
                instances: instances.max(least).min(most),
                mode,
            },
            Decision::NotEnoughData if self.target() < least || self.target() > most => {
                Decision::Desired {
                    instances: self.target().max(least).min(most),
                    mode: Mode::Stable,
                }
            }
            other => other,
        };
        if let Decision::Desired { instances, .. } = decision {
            self.set_target(instances);
        }
        decision
    }

    /// When the keep-alive plan next changes what the decider wants: the control loop
    /// wakes then, not only on its tick, so a pre-warm starts on time.
    pub fn next_edge(&self, now: Instant) -> Option<Instant> {
        self.keep.lock().next_edge(now)
    }

    /// The keep-alive policy's figures; the forecast rate is the load forecasters' when
    /// they have one (a busy function), else the policy's own (a timer's).
    pub fn keep_status(&self, now: Instant) -> (KeepStatus, Option<Forecaster>) {
        let mut s = self.keep.lock().status(now);
        let forecast = self.ahead.lock().forecast();
        if let Some((_, rps)) = forecast {
            s.forecast_rps = Some(rps);
        }
        (s, forecast.map(|(f, _)| f))
    }

    /// The state to store, when it changed since the last call: the keep-alive policy as
    /// the manifest names it, and `{"keep": its state, "rate": the forecasters' series}`.
    pub fn take_keep_state(&self) -> Option<(String, serde_json::Value)> {
        let mut keep = self.keep.lock();
        let mut ahead = self.ahead.lock();
        // Both halves whenever either changed: the row is written whole.
        let changed = keep.take_dirty() | ahead.take_dirty();
        changed.then(|| {
            let (policy, state) = keep.saved();
            (
                policy,
                serde_json::json!({ "keep": state, "rate": ahead.saved() }),
            )
        })
    }

    /// Publish a target (the decider's, or a test's).
    pub fn set_target(&self, instances: u32) {
        self.target
            .send_if_modified(|t| std::mem::replace(t, instances) != instances);
    }

    pub fn target(&self) -> u32 {
        *self.target.borrow()
    }

    /// A receiver of the target (the supervisor's).
    pub fn watch_target(&self) -> watch::Receiver<u32> {
        self.target.subscribe()
    }

    pub fn status(&self, d: &Deployment, now: Instant) -> PoolStatus {
        let (mode, panic_window, stable_window) = {
            let decider = self.decider.lock();
            let p = decider.params();
            (decider.mode(), p.panic_window, p.stable_window)
        };
        let load = d.load(now, stable_window, panic_window);
        PoolStatus {
            ready: d.ready(),
            desired: self.target(),
            executing: d.gate.busy(),
            queued: d.gate.queued(),
            queued_total: d.gate.queued_total(),
            rps: load.short_rate.unwrap_or(0.0),
            mode,
        }
    }
}
