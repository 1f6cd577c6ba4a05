//! What every keep-alive policy answers, and in what units: ticks, the policy's time step
//! (a minute on the minute model of `surge replay`, the host's `[keepalive] tick` live).

use serde::{Deserialize, Serialize};

/// The replay's longest keep-alive and the hybrid histogram's range: 4 hours of minutes,
/// the paper's standard keep-alive.
pub const STANDARD_RANGE: u32 = 240;

/// What a policy is fitted to: one function, on one time step, under one stated cost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fit {
    /// The function's memory, MB (the replay's `AverageAllocatedMb`; live, its limit).
    pub memory_mb: f64,
    /// Seconds per tick: 60 on the minute model.
    pub tick_seconds: f64,
    /// The longest keep-alive, ticks (live: `scale_to_zero_after`; the replay: 4 hours).
    pub max_keepalive: u32,
    /// GB-seconds of idle memory one cold start is worth: the host's `cold_start_cost`
    /// over its `memory_cost`.
    pub cold_start_gb_s: f64,
}

impl Fit {
    /// The minute model of `surge replay`, a cold start worth `cold_start_gb_s`.
    pub fn minute(memory_mb: f64, cold_start_gb_s: f64) -> Fit {
        Fit {
            memory_mb,
            tick_seconds: 60.0,
            max_keepalive: STANDARD_RANGE,
            cold_start_gb_s,
        }
    }

    /// Ticks of this function's idle memory one cold start is worth.
    pub fn break_even(&self) -> f64 {
        let gb = (self.memory_mb / 1024.0).max(1e-6);
        self.cold_start_gb_s / (gb * self.tick_seconds.max(1e-9))
    }
}

/// What a policy decides after a function's activity: stay unloaded for `prewarm` ticks,
/// then keep an instance loaded for `keepalive` ticks. With `prewarm` 0 the instance
/// simply stays up for `keepalive` ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Windows {
    pub prewarm: u32,
    pub keepalive: u32,
}

/// How a policy reads a function's arrivals (SPES's names where they fit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    /// The policy does not sort functions into patterns.
    None,
    /// Too few idle times seen yet.
    New,
    /// A timer: the idle times agree.
    Periodic,
    /// Busy most ticks: idle times are mostly 0.
    Dense,
    /// Every recent idle time outlasted the keep-alive.
    Sparse,
    /// None of the above.
    Irregular,
}

impl Pattern {
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::None => "-",
            Pattern::New => "new",
            Pattern::Periodic => "periodic",
            Pattern::Dense => "dense",
            Pattern::Sparse => "sparse",
            Pattern::Irregular => "irregular",
        }
    }
}

/// One function's policy state.
pub trait KeepAlive: Send {
    /// The function was idle for `ticks` whole ticks between two activities (0: it was
    /// busy again within the tick).
    fn observe_idle(&mut self, ticks: u32);
    /// The windows to apply after the activity just seen.
    fn windows(&self) -> Windows;
    /// The pattern the policy sees.
    fn pattern(&self) -> Pattern {
        Pattern::None
    }
    /// The idle time (ticks) after which the next arrival is expected, when the policy
    /// predicts one.
    fn next_arrival(&self) -> Option<u32> {
        None
    }
    /// The state to keep across a host restart (`PolicySpec::restore` reads it back);
    /// null for a stateless policy.
    fn save(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}
