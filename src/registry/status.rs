//! What `list`, `status` and `/metrics` show of a deployed version: one flat record, the
//! admin API's wire form.

use crate::control::autoscale::decider::Mode;
use crate::control::version::{Phase, VersionControl};
use crate::control::vertical::state::VerticalState;

/// A deployed version as `list` shows it.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct FunctionInfo {
    pub name: String,
    pub version: u64,
    pub kind: String,
    pub route: Option<String>,
    pub wasm_sha256: String,
    /// Instances ready (warm) now.
    pub instances: u32,
    /// The autoscaler's target.
    pub desired: u32,
    pub min_instances: u32,
    pub max_instances: u32,
    /// Requests executing now, and waiting in the activator queue.
    pub executing: u32,
    pub queued: u32,
    /// Requests that ever had to wait in the queue.
    pub queued_total: u64,
    /// Arrivals per second over the panic window.
    pub rps: f64,
    pub mode: Mode,
    pub cold_starts: u64,
    /// Requests that arrived with no instance ready (each waited for a start).
    #[serde(default)]
    pub cold_requests: u64,
    /// The keep-alive policy, and the pattern it sees in the arrivals.
    #[serde(default)]
    pub policy: String,
    #[serde(default)]
    pub pattern: String,
    /// Its windows after the last activity, seconds: unloaded for `prewarm_s`, then
    /// loaded for `keepalive_s`.
    #[serde(default)]
    pub prewarm_s: f64,
    #[serde(default)]
    pub keepalive_s: f64,
    /// When it expects the next arrival, seconds from now (while idle, for a pattern it
    /// predicts).
    #[serde(default)]
    pub next_arrival_s: Option<f64>,
    /// The arrival rate forecast for the next bucket, per second, beside `rps`, the
    /// actual: the load forecasters' (and which won the backtest), or a timer's.
    #[serde(default)]
    pub forecast_rps: Option<f64>,
    #[serde(default)]
    pub forecaster: Option<String>,
    /// Arrivals that found an instance only a pre-warm had loaded: cold starts avoided.
    #[serde(default)]
    pub prewarm_hits: u64,
    /// Lambda's reserved concurrency (None: no cap) and provisioned concurrency (0: none),
    /// in executions, as this node enforces them (in a cluster, its part of the function's).
    #[serde(default)]
    pub reserved_concurrency: Option<u32>,
    #[serde(default)]
    pub provisioned_concurrency: u32,
    /// Where the version's supervisor is: zero, starting, running, stopping.
    #[serde(default)]
    pub phase: Phase,
    pub memory: String,
    pub cpu: String,
    pub timeout: String,
    pub sandbox_pid: Option<u32>,
    pub inflight: usize,
    pub requests: u64,
    pub errors: u64,
    /// Of the errors: requests refused for capacity (reserved concurrency, a full queue,
    /// a queue wait past its timeout).
    #[serde(default)]
    pub throttles: u64,
    pub restarts: u64,
    pub cgroup: Vec<String>,
    pub deployed_at_unix: i64,
    /// Vertical: the per-instance quota in force, and which dimensions a manual resize pinned.
    pub memory_quota_bytes: u64,
    pub cpu_quota_millicores: u64,
    pub memory_pinned: bool,
    pub cpu_pinned: bool,
    /// The sandbox cgroup's limits now (absent at zero). CPU: the guarantee (the cgroup's
    /// weight, counted by the node) and the limit (its CFS quota, the burst ceiling).
    pub memory_limit_bytes: Option<u64>,
    /// What the memory limit holds beside the instances: the sandbox's overhead and its
    /// artifact (`supervisor::memory_overhead`).
    pub memory_overhead_bytes: u64,
    pub cpu_guaranteed_millicores: Option<u64>,
    /// Worker threads the sandbox takes new connections on (control/vertical/threads.rs).
    pub threads: u32,
    pub cpu_limit_millicores: Option<u64>,
    /// The cgroup's memory now and its peak; the highest wasm linear memory of one instance.
    pub memory_usage_bytes: u64,
    pub memory_peak_bytes: u64,
    pub wasm_memory_peak_bytes: u64,
    /// CPU over the last sample interval (the whole sandbox), and cumulative figures.
    pub cpu_usage_millicores: u64,
    pub cpu_usage_seconds: f64,
    pub throttled_fraction: f64,
    pub throttled_periods: u64,
    pub throttled_seconds: f64,
    /// Out-of-memory events (instances refused memory, cgroup OOM kills).
    pub oom_events: u64,
    pub oom_kills: u64,
    /// The recommender's target, once it has data.
    pub recommended_memory_bytes: Option<u64>,
    pub recommended_cpu_millicores: Option<u64>,
    pub resizes_auto: u64,
    pub resizes_manual: u64,
    pub last_resize: Option<String>,
    /// From the last resize decision to the cgroup files holding it, µs.
    pub last_resize_latency_us: u64,
    /// The pool is held below its target because the node's memory is short.
    pub capacity_limited: bool,
    pub capacity_refusals: u64,
}

impl FunctionInfo {
    pub fn of(c: &VersionControl) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let d = &c.deployment;
        let now = tokio::time::Instant::now();
        let pool = c.scaler.status(d, now);
        let (keep, forecaster) = c.scaler.keep_status(now);
        let ms = |s: f64| (s * 1000.0).round() / 1000.0;
        FunctionInfo {
            name: d.name().to_string(),
            version: d.version,
            kind: d.kind.as_str().to_string(),
            route: d.spec.route.clone(),
            wasm_sha256: d.wasm_sha256.clone(),
            instances: pool.ready,
            desired: pool.desired,
            min_instances: d.spec.scaling.min_instances,
            max_instances: d.spec.scaling.max_instances,
            executing: pool.executing,
            queued: pool.queued,
            queued_total: pool.queued_total,
            rps: (pool.rps * 100.0).round() / 100.0,
            mode: pool.mode,
            cold_starts: c.lifecycle.cold_starts.load(Relaxed),
            cold_requests: d.counters.cold_requests.load(Relaxed),
            policy: keep.policy.to_string(),
            pattern: keep.pattern.as_str().to_string(),
            prewarm_s: ms(keep.prewarm.as_secs_f64()),
            keepalive_s: ms(keep.keepalive.as_secs_f64()),
            next_arrival_s: keep.next_arrival.map(|d| ms(d.as_secs_f64())),
            forecast_rps: keep.forecast_rps.map(|r| (r * 100.0).round() / 100.0),
            forecaster: forecaster.map(|f| f.as_str().to_string()),
            prewarm_hits: keep.avoided,
            phase: c.lifecycle.phase(),
            memory: d.spec.limits.memory.to_string(),
            cpu: d.spec.limits.cpu.to_string(),
            timeout: d.spec.limits.timeout.to_string(),
            sandbox_pid: d.sandbox_pid(),
            inflight: d.inflight(),
            requests: d.counters.requests.load(Relaxed),
            errors: d.counters.errors.load(Relaxed),
            throttles: d.counters.throttles.load(Relaxed),
            restarts: c.lifecycle.restarts.load(Relaxed),
            memory_overhead_bytes: c.memory_overhead_bytes,
            cgroup: c
                .usage
                .dirs()
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            deployed_at_unix: d.deployed_at_unix,
            reserved_concurrency: Some(d.reserved()).filter(|&r| r != u32::MAX),
            provisioned_concurrency: d.provisioned(),
            ..Self::vertical(&c.vertical)
        }
    }

    /// The vertical figures; `of` fills the rest.
    fn vertical(v: &VerticalState) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let q = v.quota();
        let pins = v.pins();
        let applied = v.applied();
        let r = v.report.lock().clone();
        let u = r.usage.unwrap_or_default();
        FunctionInfo {
            memory_quota_bytes: applied.quota.unwrap_or(q).memory_bytes,
            cpu_quota_millicores: applied.quota.unwrap_or(q).cpu_millicores,
            memory_pinned: pins.memory_bytes.is_some(),
            cpu_pinned: pins.cpu_millicores.is_some(),
            memory_limit_bytes: applied.limits.map(|l| l.memory_bytes),
            cpu_guaranteed_millicores: applied.limits.map(|l| l.cpu_millicores),
            threads: v.threads(),
            cpu_limit_millicores: applied
                .limits
                .map(|l| l.cpu_ceiling_millicores.max(l.cpu_millicores)),
            memory_usage_bytes: u.memory_bytes,
            memory_peak_bytes: u.memory_peak_bytes,
            wasm_memory_peak_bytes: v.wasm_peak_bytes.load(Relaxed),
            cpu_usage_millicores: r.cpu_millicores,
            cpu_usage_seconds: u.cpu_usage_ns as f64 / 1e9,
            throttled_fraction: (r.throttled_fraction * 1000.0).round() / 1000.0,
            throttled_periods: u.nr_throttled,
            throttled_seconds: u.throttled_ns as f64 / 1e9,
            oom_events: v.counters.oom_events.load(Relaxed),
            oom_kills: u.oom_kills,
            recommended_memory_bytes: r.recommendation.map(|q| q.memory_bytes),
            recommended_cpu_millicores: r.recommendation.map(|q| q.cpu_millicores),
            resizes_auto: v.counters.resizes_auto.load(Relaxed),
            resizes_manual: v.counters.resizes_manual.load(Relaxed),
            last_resize: r.last_reason.map(|s| s.as_str().to_string()),
            last_resize_latency_us: applied.latency_us,
            capacity_limited: v.counters.capacity_limited.load(Relaxed),
            capacity_refusals: v.counters.capacity_refusals.load(Relaxed),
            ..Default::default()
        }
    }
}
