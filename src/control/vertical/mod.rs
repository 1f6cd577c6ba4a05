//! Vertical scaling: each function's per-instance quota follows what it really uses.
//!
//! ```text
//! cgroup files ─┐
//! sandbox `mem` ┴▶ sample (pure) ─▶ recommender (pure) ─▶ quota watch ─▶ supervisor: node grant,
//! reports                            History + decide      (+ manual pins)  cgroup limits rewritten
//!                                                                            in place, `memory <n>`
//! ```
//!
//! [`sample`], [`recommender`] and [`quota`] are pure. [`state`] holds each version's
//! vertical state. This module is the control loop, the only part here that reads the
//! clock and the cgroup files. A resize never restarts the sandbox: the supervisor rewrites
//! its cgroup limits and tells it the memory quota for instances it creates from then on.

pub mod quota;
pub mod recommender;
pub mod sample;
pub mod state;
pub mod threads;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::control::node::Node;
use crate::control::version::LiveVersions;
use crate::manifest::config::VerticalConfig;
use recommender::Params;

/// The recommender's parameters from the host config.
pub fn params(c: &VerticalConfig) -> Params {
    Params {
        half_life: c.half_life.0,
        memory_percentile: c.memory_percentile,
        cpu_percentile: c.cpu_percentile,
        lower_percentile: c.lower_percentile,
        upper_percentile: c.upper_percentile,
        safety_margin: c.safety_margin,
        confidence_period: c.confidence_period.0,
        oom_bump_ratio: c.oom_bump_ratio,
        oom_bump_floor_bytes: c.oom_bump_floor.0,
        throttle_threshold: c.throttle_threshold,
        throttle_sustain: c.throttle_sustain,
        throttle_raise: c.throttle_raise,
    }
}

/// Run the vertical control loop until `shutdown` resolves: every `interval`, sample every
/// live function and decide its quota; then ask the supervisors whose CPU guarantee is not
/// their fair share (and those the node's memory limited) to refit, so shares converge to
/// the allocator's division.
pub async fn run(
    live: LiveVersions,
    node: Arc<Node>,
    params: Params,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let params = Arc::new(params);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let versions = live.borrow().clone();
        let p = params.clone();
        // Reading cgroup files is cheap but blocking: one blocking task per round.
        let round = tokio::task::spawn_blocking(move || {
            for v in versions.iter() {
                let d = &v.deployment;
                let u = v.usage.read();
                let requests = d.counters.requests.load(Ordering::Relaxed);
                let now = Instant::now();
                let busy = d.busy_instances(now, interval);
                v.vertical.step(u, busy, requests, d.inflight(), &p, now);
            }
            versions
        })
        .await;
        if let Ok(versions) = round {
            let off: HashSet<String> = node.cpu_off_share().into_iter().collect();
            for v in versions.iter() {
                if v.vertical.counters.capacity_limited.load(Ordering::Relaxed)
                    || off.contains(&v.key)
                {
                    v.vertical.refit.notify_one();
                }
            }
        }
    }
}
