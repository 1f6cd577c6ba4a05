//! One version's vertical state: the quota watch the supervisor follows, its
//! acknowledgements, the manual pins, the recommender's history, and the usage figures for
//! status. [`VerticalState::step`] is one control-loop step; the arithmetic of a sample is
//! in [`super::sample`], the decision in [`super::recommender`].

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use surge_runtime::cgroup::{SandboxLimits, Usage};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::quota::{Quota, QuotaError, QuotaUpdate};
use super::recommender::{self, Decision, History, Params, Reason, Recommendation};
use super::sample::{interval_sample, Busy, WasmMemory};
use crate::manifest::Vertical;

/// Who decided a resize.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The quota a version started with.
    Initial,
    Usage,
    Oom,
    Throttled,
    Manual,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Initial => "initial",
            Source::Usage => "usage",
            Source::Oom => "oom",
            Source::Throttled => "throttled",
            Source::Manual => "manual",
        }
    }
}

impl From<Reason> for Source {
    fn from(r: Reason) -> Self {
        match r {
            Reason::Usage => Source::Usage,
            Reason::Oom => Source::Oom,
            Reason::Throttled => Source::Throttled,
        }
    }
}

/// A quota to apply: what the supervisor watches.
#[derive(Clone, Copy, Debug)]
pub struct Resize {
    pub quota: Quota,
    /// Counts resizes of this version; the supervisor acknowledges each in [`Applied`].
    pub generation: u64,
    pub decided_at: Instant,
    pub source: Source,
}

/// What the supervisor applied last.
#[derive(Clone, Copy, Debug, Default)]
pub struct Applied {
    pub generation: u64,
    /// The limits its cgroup holds (None: at zero, no cgroup).
    pub limits: Option<SandboxLimits>,
    /// The quota those limits are for: below the published one when the node's memory could
    /// not take a raise for the instances the sandbox holds.
    pub quota: Option<Quota>,
    /// From the decision to the cgroup files holding the limits, µs.
    pub latency_us: u64,
}

/// Usage figures for status and metrics, from the last sample.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VerticalReport {
    pub usage: Option<Usage>,
    /// CPU over the last interval, the whole sandbox, millicores.
    pub cpu_millicores: u64,
    /// Fraction of the last interval's CFS periods that were throttled.
    pub throttled_fraction: f64,
    pub recommendation: Option<Quota>,
    pub last_reason: Option<Source>,
}

/// Counters for status and metrics.
#[derive(Default)]
pub struct VerticalCounters {
    pub resizes_auto: AtomicU64,
    pub resizes_manual: AtomicU64,
    /// Out-of-memory events: instances refused memory, and cgroup OOM kills.
    pub oom_events: AtomicU64,
    /// Scale-ups (or raises) the node's memory could not take.
    pub capacity_refusals: AtomicU64,
    /// Set while the pool is held below its target for lack of node memory.
    pub capacity_limited: AtomicBool,
}

/// One deployment's vertical state.
pub struct VerticalState {
    pub spec: Vertical,
    resize: watch::Sender<Resize>,
    applied: watch::Sender<Applied>,
    pins: Mutex<QuotaUpdate>,
    history: Mutex<History>,
    /// The previous sample: when, the cgroup's cumulative counters then, and which cgroup.
    last: Mutex<Option<(Instant, Usage, u64)>>,
    /// Counts the cgroups this version had: a new one (a cold start) restarts its counters.
    cgroup_epoch: AtomicU64,
    pub report: Mutex<VerticalReport>,
    /// Highest wasm linear memory of one instance since the last sample (sandbox reports).
    wasm_peak_interval: AtomicU64,
    /// Largest memory a refused grow asked for since the last sample.
    wasm_denied: AtomicU64,
    /// Highest wasm linear memory of one instance ever.
    pub wasm_peak_bytes: AtomicU64,
    pub counters: VerticalCounters,
    /// Worker threads the sandbox should take new connections on ([`super::threads`]),
    /// between `threads_base` and `threads_max`.
    threads: watch::Sender<u32>,
    threads_base: AtomicU32,
    threads_max: AtomicU32,
    /// Asks the supervisor to re-request its node share (CPU contested, or memory refused).
    pub refit: Notify,
    /// The deployment's request count at the previous sample.
    last_requests: AtomicU64,
}

impl VerticalState {
    pub fn new(spec: Vertical, initial: Quota, pins: QuotaUpdate, params: &Params) -> Self {
        let b = spec.bounds;
        VerticalState {
            spec,
            resize: watch::Sender::new(Resize {
                quota: initial,
                generation: 0,
                decided_at: Instant::now(),
                source: Source::Initial,
            }),
            applied: watch::Sender::new(Applied::default()),
            // A pin from an earlier version stays within this version's bounds.
            pins: Mutex::new(QuotaUpdate {
                memory_bytes: pins
                    .memory_bytes
                    .map(|m| m.clamp(b.memory_min_bytes, b.memory_max_bytes)),
                cpu_millicores: pins
                    .cpu_millicores
                    .map(|c| c.clamp(b.cpu_min_millicores, b.cpu_max_millicores)),
            }),
            history: Mutex::new(History::new(params)),
            last: Mutex::new(None),
            cgroup_epoch: AtomicU64::new(0),
            report: Mutex::new(VerticalReport::default()),
            wasm_peak_interval: AtomicU64::new(0),
            wasm_denied: AtomicU64::new(0),
            wasm_peak_bytes: AtomicU64::new(0),
            counters: VerticalCounters::default(),
            threads: watch::Sender::new(1),
            threads_base: AtomicU32::new(1),
            threads_max: AtomicU32::new(1),
            refit: Notify::new(),
            last_requests: AtomicU64::new(0),
        }
    }

    /// The quota in force (what the supervisor applies).
    pub fn quota(&self) -> Quota {
        self.resize.borrow().quota
    }

    pub fn pins(&self) -> QuotaUpdate {
        *self.pins.lock()
    }

    pub fn watch_resize(&self) -> watch::Receiver<Resize> {
        self.resize.subscribe()
    }

    pub fn applied(&self) -> Applied {
        *self.applied.borrow()
    }

    /// The supervisor acknowledges a resize (or a limits change of its own).
    pub fn set_applied(&self, a: Applied) {
        self.applied.send_replace(a);
    }

    /// The cgroup's limits changed outside a resize (a scale, a start, a stop).
    pub fn set_limits(&self, limits: Option<SandboxLimits>, quota: Quota) {
        self.applied.send_if_modified(|a| {
            let changed = a.limits != limits || a.quota != Some(quota);
            a.limits = limits;
            a.quota = Some(quota);
            changed
        });
    }

    /// A new cgroup was created for this version: its counters start from zero.
    /// The sandbox's thread range: `base` for light guests, at most `max`.
    pub fn set_thread_range(&self, base: u32, max: u32) {
        let max = max.max(1);
        self.threads_max.store(max, Ordering::Relaxed);
        self.threads_base
            .store(base.clamp(1, max), Ordering::Relaxed);
        self.threads.send_replace(base.clamp(1, max));
    }

    pub fn watch_threads(&self) -> watch::Receiver<u32> {
        self.threads.subscribe()
    }

    pub fn threads(&self) -> u32 {
        *self.threads.borrow()
    }

    pub fn new_cgroup(&self) {
        self.cgroup_epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// The quota the sandbox runs with: the applied one, or the published one before the
    /// first apply.
    pub fn quota_in_force(&self) -> Quota {
        self.applied().quota.unwrap_or_else(|| self.quota())
    }

    /// A sandbox `mem <peak> <denied>` report.
    pub fn observe_wasm(&self, peak_bytes: u64, denied_bytes: u64) {
        self.wasm_peak_interval
            .fetch_max(peak_bytes, Ordering::Relaxed);
        self.wasm_peak_bytes
            .fetch_max(peak_bytes, Ordering::Relaxed);
        if denied_bytes > 0 {
            self.wasm_denied.fetch_max(denied_bytes, Ordering::Relaxed);
        }
    }

    fn publish(&self, quota: Quota, source: Source, now: Instant) -> u64 {
        let mut generation = 0;
        self.resize.send_modify(|r| {
            r.generation += 1;
            generation = r.generation;
            r.quota = quota;
            r.decided_at = now;
            r.source = source;
        });
        let c = if source == Source::Manual {
            &self.counters.resizes_manual
        } else {
            &self.counters.resizes_auto
        };
        c.fetch_add(1, Ordering::Relaxed);
        self.report.lock().last_reason = Some(source);
        generation
    }

    /// A manual resize, checked but not applied: the quota it gives (validated as a whole
    /// against the bounds) and the pins after it. A dimension set in `clear` is unpinned
    /// (the recommender takes it again).
    pub fn prepare_manual(
        &self,
        update: &QuotaUpdate,
        clear_memory: bool,
        clear_cpu: bool,
    ) -> Result<(Quota, QuotaUpdate), QuotaError> {
        let current = self.quota();
        let next = if update.memory_bytes.is_some() || update.cpu_millicores.is_some() {
            current.update(update, &self.spec.bounds)?
        } else if clear_memory || clear_cpu {
            current
        } else {
            return Err(QuotaError::Empty);
        };
        let mut pins = self.pins();
        if update.memory_bytes.is_some() {
            pins.memory_bytes = update.memory_bytes;
        } else if clear_memory {
            pins.memory_bytes = None;
        }
        if update.cpu_millicores.is_some() {
            pins.cpu_millicores = update.cpu_millicores;
        } else if clear_cpu {
            pins.cpu_millicores = None;
        }
        Ok((next, pins))
    }

    /// Apply prepared (and persisted) pins: the pinned dimensions take the pinned values,
    /// the others stay. Returns the generation to wait for. Under the pins lock, so a
    /// recommender step cannot publish between the two.
    pub fn commit_manual(&self, pins: QuotaUpdate) -> u64 {
        let mut held = self.pins.lock();
        *held = pins;
        let current = self.quota();
        let next = Quota {
            memory_bytes: pins.memory_bytes.unwrap_or(current.memory_bytes),
            cpu_millicores: pins.cpu_millicores.unwrap_or(current.cpu_millicores),
        };
        if next != current {
            self.publish(next, Source::Manual, Instant::now())
        } else {
            self.resize.borrow().generation
        }
    }

    /// Wait until the supervisor applied `generation` (or `within` passes).
    pub async fn wait_applied(&self, generation: u64, within: Duration) -> Option<Applied> {
        let mut rx = self.applied.subscribe();
        let waited = tokio::time::timeout(within, rx.wait_for(|a| a.generation >= generation))
            .await
            .ok()?
            .ok()
            .map(|a| *a);
        waited
    }

    /// One control-loop step for this deployment: turn the cgroup's counters and the
    /// sandbox's reports into a sample, record it, decide, and publish a new quota if the
    /// decision (with the pins) changes it.
    pub fn step(
        &self,
        usage: Usage,
        busy_instances: f64,
        requests_total: u64,
        inflight: usize,
        params: &Params,
        now: Instant,
    ) {
        let served_before = self.last_requests.swap(requests_total, Ordering::Relaxed);
        let active = served_before != requests_total || inflight > 0;
        let epoch = self.cgroup_epoch.load(Ordering::Relaxed);
        // The previous reading counts only if it was of the same cgroup.
        let prev = self
            .last
            .lock()
            .replace((now, usage.clone(), epoch))
            .filter(|(_, _, e)| *e == epoch);
        let quota = self.quota_in_force();
        let wasm = WasmMemory {
            peak_bytes: self.wasm_peak_interval.swap(0, Ordering::Relaxed),
            denied_bytes: self.wasm_denied.swap(0, Ordering::Relaxed),
        };
        let elapsed = prev.as_ref().map_or(Duration::ZERO, |(t0, _, _)| {
            now.saturating_duration_since(*t0)
        });
        let s = interval_sample(
            prev.as_ref().map(|(_, u0, _)| u0),
            &usage,
            elapsed,
            Busy {
                instances: busy_instances,
                active,
            },
            wasm,
            quota,
        );
        if s.sample.oom_bytes.is_some() {
            self.counters.oom_events.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(used) = s.cpu_total_millicores {
            let served = requests_total.saturating_sub(served_before);
            let threads = super::threads::decide(super::threads::Observed {
                // millicores × seconds = CPU ms; per request in µs.
                cpu_per_request_us: (served > 0)
                    .then(|| used as f64 * elapsed.as_secs_f64() * 1_000.0 / served as f64),
                used_millicores: used,
                active: self.threads(),
                base: self.threads_base.load(Ordering::Relaxed),
                max: self.threads_max.load(Ordering::Relaxed),
            });
            self.threads
                .send_if_modified(|t| std::mem::replace(t, threads) != threads);
        }
        let (rec, decision): (Option<Recommendation>, Decision) = {
            let mut h = self.history.lock();
            h.record(&s.sample, now);
            recommender::decide(&mut h, quota, &self.spec.bounds, params, now)
        };
        {
            let mut r = self.report.lock();
            r.usage = Some(usage);
            r.cpu_millicores = s.cpu_total_millicores.unwrap_or(0);
            r.throttled_fraction = s.sample.throttled_fraction;
            r.recommendation = rec.map(|r| r.target);
        }
        let Decision::Resize {
            quota: want,
            reason,
        } = decision
        else {
            return;
        };
        if !self.spec.enabled {
            return;
        }
        // Pins are read and the quota published under one lock: a manual resize cannot
        // land between the two and be overwritten.
        let pins = self.pins.lock();
        let next = self.spec.bounds.clamp(Quota {
            memory_bytes: pins.memory_bytes.unwrap_or(want.memory_bytes),
            cpu_millicores: pins.cpu_millicores.unwrap_or(want.cpu_millicores),
        });
        if next != quota {
            tracing::info!(
                memory_bytes = next.memory_bytes,
                cpu_millicores = next.cpu_millicores,
                from_memory_bytes = quota.memory_bytes,
                from_cpu_millicores = quota.cpu_millicores,
                reason = Source::from(reason).as_str(),
                "vertical resize"
            );
            self.publish(next, reason.into(), now);
        }
        drop(pins);
    }
}
