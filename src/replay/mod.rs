//! `surge replay`: every keep-alive policy judged on a production trace, with the same
//! policy code as the live host (`control::keepalive`) on simulated time.
//!
//! The trace is the Azure Functions trace's schema (`trace.rs`); the model is the minute
//! model of Shahrad et al. (`minute.rs`). Functions stream through one at a time, each
//! replayed under every policy, so a file of any size replays in memory that grows only
//! with the per-function results.

pub mod minute;
pub mod plot;
pub mod trace;

use std::path::PathBuf;

use serde::Serialize;

use crate::control::keepalive::{Fit, PolicySpec};
use trace::{percentile, Durations, Invocations, Memory, TraceError};

pub struct Options {
    pub invocations: PathBuf,
    pub memory: Option<PathBuf>,
    pub durations: Option<PathBuf>,
    pub policies: Vec<PolicySpec>,
    /// Only the first N functions of the file.
    pub functions: Option<usize>,
    /// GB-seconds of idle memory a cold start is worth, for `predictive` (the host
    /// config's `[keepalive]` costs: [`embedded_cold_start_gb_s`]).
    pub cold_start_gb_s: f64,
}

/// The embedded host config's `[keepalive]` costs, as GB-seconds per cold start.
pub fn embedded_cold_start_gb_s() -> f64 {
    crate::manifest::config::HostConfig::embedded()
        .keepalive
        .cold_start_gb_s()
}

/// What one policy did over the whole trace.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PolicyReport {
    pub policy: String,
    pub model: &'static str,
    /// Functions with at least one invocation.
    pub functions: u64,
    pub invocations: u64,
    pub cold_starts: u64,
    /// Cold starts over all invocations.
    pub cold_share: f64,
    /// The per-function cold share (cold starts ÷ its invocations), over functions.
    pub cold_share_p50: f64,
    pub cold_share_p75: f64,
    /// Loaded idle minutes × the function's memory, in GB-minutes (1 GB = 1,024 MB).
    pub wasted_gb_min: f64,
}

/// Memory per function when no memory file is given: waste is then in loaded idle
/// minutes × 1 GB.
pub const DEFAULT_MEMORY_MB: f64 = 1024.0;

pub struct Replay {
    pub reports: Vec<PolicyReport>,
    pub minutes: usize,
    /// Functions that had execution-time percentiles in the durations file.
    pub with_durations: Option<usize>,
}

/// Replay the trace on the minute model under each policy.
pub fn run_minute(opts: &Options) -> Result<Replay, TraceError> {
    let memory = opts.memory.as_deref().map(Memory::read).transpose()?;
    let durations = opts.durations.as_deref().map(Durations::read).transpose()?;
    let invocations = Invocations::open(&opts.invocations)?;
    let minutes = invocations.minutes();
    let n = opts.policies.len();
    let mut totals = vec![minute::Outcome::default(); n];
    let mut wasted_gb_min = vec![0.0f64; n];
    let mut shares: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut with_durations = 0usize;
    for f in invocations.take(opts.functions.unwrap_or(usize::MAX)) {
        let f = f?;
        if f.per_minute.iter().all(|&c| c == 0) {
            continue;
        }
        let mb = memory.as_ref().map_or(DEFAULT_MEMORY_MB, |m| m.of(&f));
        if durations.as_ref().is_some_and(|d| d.of(&f).is_some()) {
            with_durations += 1;
        }
        let fit = Fit::minute(mb, opts.cold_start_gb_s);
        for (i, spec) in opts.policies.iter().enumerate() {
            let o = minute::simulate(&f.per_minute, spec.start(&fit).as_mut());
            totals[i].invocations += o.invocations;
            totals[i].cold_starts += o.cold_starts;
            totals[i].wasted_minutes += o.wasted_minutes;
            wasted_gb_min[i] += o.wasted_minutes as f64 * mb / 1024.0;
            shares[i].push(o.cold_starts as f64 / o.invocations as f64);
        }
    }
    let reports = opts
        .policies
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let s = &mut shares[i];
            s.sort_by(f64::total_cmp);
            let t = totals[i];
            PolicyReport {
                policy: spec.to_string(),
                model: "minute",
                functions: s.len() as u64,
                invocations: t.invocations,
                cold_starts: t.cold_starts,
                cold_share: if t.invocations == 0 {
                    0.0
                } else {
                    t.cold_starts as f64 / t.invocations as f64
                },
                cold_share_p50: percentile(s, 50.0),
                cold_share_p75: percentile(s, 75.0),
                wasted_gb_min: wasted_gb_min[i],
            }
        })
        .collect();
    Ok(Replay {
        reports,
        minutes,
        with_durations: durations.map(|_| with_durations),
    })
}
