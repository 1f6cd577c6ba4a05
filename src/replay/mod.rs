//! `surge replay`: every keep-alive policy judged on a production trace, with the same
//! policy code as the live host (`control::keepalive`) on simulated time.
//!
//! The trace is the Azure Functions trace's schema (`trace.rs`); the model is the minute
//! model of Shahrad et al. (`minute.rs`). Functions stream through one at a time, each
//! replayed under every policy, so a file of any size replays in memory that grows only
//! with the per-function results.

pub mod cluster;
pub mod live;
pub mod minute;
pub mod plot;
pub mod trace;

use std::path::PathBuf;

use rand::SeedableRng;
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
    /// Told of each function replayed (the CLI's progress bar).
    pub progress: Progress,
}

/// A callback per function replayed, from any of the replay's threads.
#[derive(Clone, Default)]
pub struct Progress(Option<std::sync::Arc<dyn Fn() + Send + Sync>>);

impl Progress {
    pub fn new(f: impl Fn() + Send + Sync + 'static) -> Self {
        Progress(Some(std::sync::Arc::new(f)))
    }

    fn tick(&self) {
        if let Some(f) = &self.0 {
            f()
        }
    }
}

impl Options {
    /// The same trace under other policies (for a chart's sweeps); the durations file only
    /// when the model reads it.
    pub fn with_policies(&self, policies: Vec<PolicySpec>, durations: bool) -> Options {
        Options {
            invocations: self.invocations.clone(),
            memory: self.memory.clone(),
            durations: if durations {
                self.durations.clone()
            } else {
                None
            },
            policies,
            functions: self.functions,
            cold_start_gb_s: self.cold_start_gb_s,
            progress: Progress::default(),
        }
    }
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
        opts.progress.tick();
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

/// What one policy did over the whole trace on the live model.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LiveReport {
    pub policy: String,
    pub model: &'static str,
    pub functions: u64,
    pub invocations: u64,
    /// Requests whose wait an instance's start ended.
    pub cold_starts: u64,
    pub cold_share: f64,
    /// Instances started.
    pub instance_starts: u64,
    /// The time requests waited for an instance, over all invocations, ms.
    pub added_latency_p50_ms: f64,
    pub added_latency_p99_ms: f64,
    /// Instance-seconds loaded and idle, and the same × memory (GB-s; GB-min, to compare
    /// with the minute model).
    pub idle_instance_s: f64,
    pub wasted_gb_s: f64,
    pub wasted_gb_min: f64,
    /// The most instances at once over all functions (the sum of each function's peak in
    /// the busiest minute).
    pub peak_instances: u64,
}

impl LiveReport {
    /// The figures the Pareto chart draws (cold starts against wasted GB-minutes).
    pub fn as_point(&self) -> PolicyReport {
        PolicyReport {
            policy: self.policy.clone(),
            model: "live",
            functions: self.functions,
            invocations: self.invocations,
            cold_starts: self.cold_starts,
            cold_share: self.cold_share,
            cold_share_p50: 0.0,
            cold_share_p75: 0.0,
            wasted_gb_min: self.wasted_gb_min,
        }
    }
}

/// The execution times the live and cluster models draw from (`--durations`, required).
fn durations(opts: &Options, model: &str) -> Result<Durations, TraceError> {
    let Some(path) = opts.durations.as_deref() else {
        return Err(TraceError {
            path: opts.invocations.clone(),
            line: None,
            message: format!(
                "--model {model} draws execution times from the function's percentiles: \
                 give --durations (the trace's *_run.csv)"
            ),
        });
    };
    Durations::read(path)
}

/// Functions replayed at once: each worker takes one function under every policy.
const LIVE_BATCH: usize = 256;

/// Replay the trace on the live model under each policy. Functions stream through in
/// batches, shared among the cores.
pub fn run_live(opts: &Options, p: &live::LiveParams) -> Result<Vec<LiveReport>, TraceError> {
    let memory = opts.memory.as_deref().map(Memory::read).transpose()?;
    let durations = durations(opts, "live")?;
    let fallback_ms = durations.median_p50();
    let invocations = Invocations::open(&opts.invocations)?;
    let minutes = invocations.minutes();
    let n = opts.policies.len();
    let mut out: Vec<(live::LiveOutcome, f64, u64)> =
        vec![(live::LiveOutcome::default(), 0.0, 0); n];
    let mut peaks = vec![vec![0u64; minutes]; n];
    let workers = std::thread::available_parallelism().map_or(1, |c| c.get());
    let mut all = invocations
        .take(opts.functions.unwrap_or(usize::MAX))
        .peekable();
    let mut index = 0u64;
    while all.peek().is_some() {
        let mut batch = Vec::with_capacity(LIVE_BATCH);
        for f in all.by_ref().take(LIVE_BATCH) {
            let f = f?;
            index += 1;
            if f.per_minute.iter().all(|&c| c == 0) {
                opts.progress.tick();
                continue;
            }
            let mb = memory.as_ref().map_or(DEFAULT_MEMORY_MB, |m| m.of(&f));
            // A function with no percentiles runs for the file's median p50.
            let pct = durations
                .of(&f)
                .map_or_else(|| vec![(50.0, fallback_ms)], <[_]>::to_vec);
            batch.push((index, f.per_minute, mb, pct));
        }
        // Workers take the next function as they free up: one heavy function does not hold
        // the others back.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut results: Vec<(usize, Vec<(live::LiveOutcome, f64)>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers.min(batch.len()).max(1))
                .map(|_| {
                    s.spawn(|| {
                        let mut res = Vec::new();
                        loop {
                            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some((i, per_minute, mb, pct)) = batch.get(k) else {
                                break;
                            };
                            let mut rng = rand::rngs::StdRng::seed_from_u64(p.seed ^ (i << 20));
                            let arr = live::arrivals(per_minute, pct, &mut rng);
                            let per: Vec<_> = opts
                                .policies
                                .iter()
                                .map(|spec| (live::simulate(&arr, minutes, *mb, spec, p), *mb))
                                .collect();
                            res.push((k, per));
                            opts.progress.tick();
                        }
                        res
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        // The same order whatever the scheduling: sums of floats are then reproducible.
        results.sort_by_key(|r| r.0);
        let results = results.into_iter().map(|r| r.1);
        for per in results {
            for (i, (o, mb)) in per.into_iter().enumerate() {
                let (acc, gb_s, fns) = &mut out[i];
                acc.invocations += o.invocations;
                acc.cold_starts += o.cold_starts;
                acc.starts += o.starts;
                acc.idle_instance_s += o.idle_instance_s;
                acc.waits.merge(&o.waits);
                *gb_s += o.idle_instance_s * mb / 1024.0;
                *fns += 1;
                for (m, &k) in o.per_minute_peak.iter().enumerate() {
                    peaks[i][m] += u64::from(k);
                }
            }
        }
    }
    Ok(opts
        .policies
        .iter()
        .zip(out)
        .zip(peaks)
        .map(|((spec, (o, gb_s, fns)), peak)| LiveReport {
            policy: spec.to_string(),
            model: "live",
            functions: fns,
            invocations: o.invocations,
            cold_starts: o.cold_starts,
            cold_share: if o.invocations == 0 {
                0.0
            } else {
                o.cold_starts as f64 / o.invocations as f64
            },
            instance_starts: o.starts,
            added_latency_p50_ms: o.waits.percentile_ms(50.0),
            added_latency_p99_ms: o.waits.percentile_ms(99.0),
            idle_instance_s: o.idle_instance_s,
            wasted_gb_s: gb_s,
            wasted_gb_min: gb_s / 60.0,
            peak_instances: peak.into_iter().max().unwrap_or(0),
        })
        .collect())
}
