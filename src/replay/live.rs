//! `surge replay --model live`: the trace through the live host's own control code, on
//! simulated time. Each minute's invocations are spread over the minute by a seeded
//! Poisson process (given the minute's count, uniform arrival times), each runs for a time
//! drawn from its function's execution-time percentiles, and a function's pool is what the
//! live autoscaler makes it:
//!
//! - the data path's load window (`dispatch::load::Window`) records every arrival and
//!   answer, and the idle spans;
//! - every decision goes through `control::autoscale::scaler::decide_with`, the live
//!   loop's own: the keep-alive policy, the rate forecast's floor, the KPA decider;
//! - decisions come on the live loop's tick while anything is loaded, at once when a
//!   request has to wait (the poke), and at the keep-alive plan's edges;
//! - an instance asked for serves after `cold_start`; one request per instance at a time
//!   (a wasi:http instance's concurrency); a request that finds none free waits in the
//!   queue, and if an instance's start ends its wait it was a cold start.
//!
//! The policies map to the live host's: `fixed:<m>` and `kpa` are `policy = "fixed"` with
//! `scale_to_zero_after` m minutes (60 s for kpa); `hybrid` is `policy = "hybrid"` on
//! 1-minute bins; `predictive` is the live default on `[keepalive] tick`. Both of the last
//! two may keep an idle instance up to 4 hours (the minute model's range).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;
use tokio::time::Instant;

use crate::control::autoscale::ahead::Ahead;
use crate::control::autoscale::decider::{Decider, Decision, Params};
use crate::control::autoscale::keep::LivePolicy;
use crate::control::autoscale::scaler::{decide_with, Input};
use crate::control::keepalive::policy::STANDARD_RANGE;
use crate::control::keepalive::PolicySpec;
use crate::dispatch::load::Window;
use crate::dispatch::Load;
use crate::manifest::config::KeepAliveConfig;
use crate::manifest::sections::KeepAlivePolicy;

/// What the live model is run with.
#[derive(Clone, Debug)]
pub struct LiveParams {
    /// From the decision to start an instance to its serving.
    pub cold_start: Duration,
    pub seed: u64,
    /// The control loop's tick (`[autoscaler] tick`).
    pub tick: Duration,
    pub keepalive: KeepAliveConfig,
}

/// Request waits, in a log histogram: bucket 0 holds waits of 0, bucket k ≥ 1 waits of
/// about GROWTH^k µs (2 % apart), so percentiles are within 2 % at any size of trace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Waits {
    buckets: Vec<u64>,
}

const GROWTH: f64 = 1.02;

impl Waits {
    pub fn add(&mut self, wait: Duration) {
        let us = wait.as_secs_f64() * 1e6;
        let k = if us < 1.0 {
            0
        } else {
            1 + (us.ln() / GROWTH.ln()) as usize
        };
        if self.buckets.len() <= k {
            self.buckets.resize(k + 1, 0);
        }
        self.buckets[k] += 1;
    }

    pub fn merge(&mut self, o: &Waits) {
        if self.buckets.len() < o.buckets.len() {
            self.buckets.resize(o.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a += b;
        }
    }

    /// The `p`th percentile (0..100), in ms.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let n: u64 = self.buckets.iter().sum();
        if n == 0 {
            return 0.0;
        }
        let want = ((p / 100.0 * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (k, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= want {
                return if k == 0 {
                    0.0
                } else {
                    GROWTH.powi(k as i32 - 1) * GROWTH.sqrt() / 1000.0
                };
            }
        }
        0.0
    }
}

/// One function's day under one policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiveOutcome {
    pub invocations: u64,
    /// Requests whose wait an instance's start ended.
    pub cold_starts: u64,
    /// Instances started.
    pub starts: u64,
    pub waits: Waits,
    /// Instance-seconds loaded and idle (ready, serving nothing), inside the day.
    pub idle_instance_s: f64,
    /// The most instances (starting, ready or busy) in each minute of the day.
    pub per_minute_peak: Vec<u32>,
}

/// One invocation: when it arrives (from the start of the day) and how long it runs.
pub type Arrival = (Duration, Duration);

/// The function's invocations: each minute's count spread uniformly over the minute (a
/// Poisson process given the count), each with an execution time drawn from
/// `percentiles` ((percentile, ms), increasing), by linear interpolation between them.
pub fn arrivals(per_minute: &[u32], percentiles: &[(f64, f64)], rng: &mut StdRng) -> Vec<Arrival> {
    let mut out = Vec::with_capacity(per_minute.iter().map(|&n| n as usize).sum());
    for (m, &n) in per_minute.iter().enumerate() {
        let start = out.len();
        for _ in 0..n {
            let at = Duration::from_secs_f64((m as f64 + rng.gen::<f64>()) * 60.0);
            out.push((at, execution_time(percentiles, rng.gen::<f64>() * 100.0)));
        }
        out[start..].sort_by_key(|a| a.0);
    }
    out
}

fn execution_time(percentiles: &[(f64, f64)], p: f64) -> Duration {
    let ms = match percentiles {
        [] => 0.0,
        [(_, ms)] => *ms,
        _ => {
            let i = percentiles
                .windows(2)
                .position(|w| p <= w[1].0)
                .unwrap_or(percentiles.len() - 2);
            let ((p0, m0), (p1, m1)) = (percentiles[i], percentiles[i + 1]);
            if p1 > p0 {
                m0 + (m1 - m0) * ((p - p0) / (p1 - p0)).clamp(0.0, 1.0)
            } else {
                m1
            }
        }
    };
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}

/// The live host's policy for a replay policy: (keep-alive, `scale_to_zero_after`).
fn live_policy(spec: &PolicySpec, memory_mb: f64, p: &LiveParams) -> (LivePolicy, Duration) {
    let range = Duration::from_secs(60 * u64::from(STANDARD_RANGE));
    let gb_s = p.keepalive.cold_start_gb_s();
    let (choice, tick, bound, gb_s) = match *spec {
        PolicySpec::Fixed(m) => (
            KeepAlivePolicy::Fixed,
            p.keepalive.tick.0,
            Duration::from_secs(60 * u64::from(m)),
            gb_s,
        ),
        PolicySpec::Kpa => (
            KeepAlivePolicy::Fixed,
            p.keepalive.tick.0,
            Params::default().scale_to_zero_after,
            gb_s,
        ),
        PolicySpec::Hybrid => (
            KeepAlivePolicy::Hybrid,
            Duration::from_secs(60),
            range,
            gb_s,
        ),
        PolicySpec::Predictive(w) => (
            KeepAlivePolicy::Predictive,
            p.keepalive.tick.0,
            range,
            w.map_or(gb_s, |w| w * 60.0),
        ),
    };
    (
        LivePolicy::with(choice, memory_mb, tick, bound, gb_s, None),
        bound,
    )
}

/// Replay `arrivals` (sorted) over a day of `minutes` under `spec`.
pub fn simulate(
    arrivals: &[Arrival],
    minutes: usize,
    memory_mb: f64,
    spec: &PolicySpec,
    p: &LiveParams,
) -> LiveOutcome {
    let (mut keep, scale_to_zero_after) = live_policy(spec, memory_mb, p);
    let params = Params {
        max_instances: crate::manifest::sections::MAX_INSTANCES_LIMIT,
        scale_to_zero_after,
        ..Params::default()
    };
    let mut ahead = Ahead::new(&p.keepalive, None);
    let mut decider = Decider::new(params.clone());
    let t0 = Instant::now();
    let day_end = t0 + Duration::from_secs(60 * minutes as u64);
    let gran = (params.panic_window / 30).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut window = Window::new(t0, gran, params.stable_window);
    let bucket = p.keepalive.forecast_bucket.0;

    let mut out = LiveOutcome {
        per_minute_peak: vec![0; minutes],
        ..LiveOutcome::default()
    };
    // Instances: free and warm; busy until (a min-heap of ends); starting, ready at.
    let mut free = 0u32;
    let mut busy: BinaryHeap<Reverse<Instant>> = BinaryHeap::new();
    let mut starting: VecDeque<Instant> = VecDeque::new();
    let mut queue: VecDeque<(Instant, Duration)> = VecDeque::new();
    let mut target = 0u32;
    let mut next_arrival = 0usize;
    let mut next_decision: Option<Instant> = None;
    let mut last = t0;
    let mut requests = 0u64;

    loop {
        let ta = arrivals.get(next_arrival).map(|a| t0 + a.0);
        let tc = busy.peek().map(|r| r.0);
        let ts = starting.front().copied();
        let Some(t) = [tc, ts, ta, next_decision].into_iter().flatten().min() else {
            break;
        };
        if t >= day_end && queue.is_empty() && busy.is_empty() {
            break;
        }
        // Idle loaded instances, inside the day.
        let until = t.min(day_end);
        if until > last {
            out.idle_instance_s += f64::from(free) * (until - last).as_secs_f64();
            last = until;
        }
        let total = |free: u32, busy: &BinaryHeap<_>, starting: &VecDeque<_>| {
            free + busy.len() as u32 + starting.len() as u32
        };

        if tc == Some(t) {
            busy.pop();
            window.change(t, -1);
            if let Some((at, run)) = queue.pop_front() {
                // A waiting request takes the instance at once.
                busy.push(Reverse(t + run));
                out.waits.add(t - at);
            } else if total(free, &busy, &starting) + 1 > target {
                // Scaled down meanwhile: this instance goes as it frees.
            } else {
                free += 1;
            }
        } else if ts == Some(t) {
            starting.pop_front();
            if let Some((at, run)) = queue.pop_front() {
                busy.push(Reverse(t + run));
                out.waits.add(t - at);
                out.cold_starts += 1;
            } else {
                free += 1;
            }
        } else if ta == Some(t) {
            let run = arrivals[next_arrival].1;
            next_arrival += 1;
            requests += 1;
            out.invocations += 1;
            let warm = free + busy.len() as u32 > 0;
            window.arrival(t);
            window.change_found(t, 1, warm);
            if free > 0 {
                free -= 1;
                busy.push(Reverse(t + run));
                out.waits.add(Duration::ZERO);
            } else {
                queue.push_back((t, run));
                // The poke: a request waits, decide now.
                next_decision = Some(next_decision.map_or(t, |d| d.min(t)));
            }
        } else {
            // A decision, as the live loop makes it.
            let (gaps, seen) = window.gaps_after(keep.gaps_seen());
            let input = Input {
                load: Load {
                    long_average: window.average_concurrency(t, params.stable_window),
                    short_average: window.average_concurrency(t, params.panic_window),
                    short_rate: window.arrival_rate(t, params.panic_window),
                    long_rate: window.arrival_rate(t, params.stable_window),
                    current: window.level(),
                    idle_since: window.idle_since(),
                },
                ready: free + busy.len() as u32,
                gaps: &gaps,
                gaps_seen: seen,
                requests,
                lead: p.cold_start,
                backlog: 0,
            };
            let idle_since = input.load.idle_since;
            if let Decision::Desired { instances, .. } =
                decide_with(&mut decider, &mut keep, &mut ahead, &input, t)
            {
                target = instances;
                let have = total(free, &busy, &starting);
                if target > have {
                    for _ in have..target {
                        starting.push_back(t + p.cold_start);
                    }
                    out.starts += u64::from(target - have);
                } else {
                    let mut drop = have - target;
                    let idle = drop.min(free);
                    free -= idle;
                    drop -= idle;
                    while drop > 0 && starting.pop_back().is_some() {
                        drop -= 1;
                    }
                }
            }
            // The next decision: on the tick while anything is loaded or inside; while
            // idle, at the plan's edge, the scale to zero, and the forecast's next bucket.
            let have = total(free, &busy, &starting);
            let active = !queue.is_empty() || !busy.is_empty() || !starting.is_empty();
            next_decision = if active {
                Some(t + p.tick)
            } else {
                let settle = idle_since.map(|s| s + params.stable_window);
                let zero = idle_since.map(|s| s + scale_to_zero_after);
                let wake = [
                    keep.next_edge(t),
                    if have > 0 {
                        settle.filter(|&s| s > t)
                    } else {
                        None
                    },
                    if have > 0 {
                        zero.filter(|&z| z > t)
                    } else {
                        None
                    },
                    Some(t + bucket),
                ];
                let next = wake.into_iter().flatten().min();
                // While the windows still settle after the last request, keep the tick.
                match (have > 0, settle) {
                    (true, Some(s)) if s > t => Some((t + p.tick).min(next.unwrap_or(s))),
                    _ => next,
                }
            };
            if next_decision.is_some_and(|d| d >= day_end)
                && next_arrival >= arrivals.len()
                && !active
            {
                next_decision = None;
            }
        }
        let now_total = total(free, &busy, &starting);
        let minute = ((t.min(day_end) - t0).as_secs() / 60) as usize;
        if let Some(m) = out
            .per_minute_peak
            .get_mut(minute.min(minutes.saturating_sub(1)))
        {
            *m = (*m).max(now_total);
        }
    }
    // Loaded to the end of the day: idle.
    if day_end > last {
        out.idle_instance_s += f64::from(free) * (day_end - last).as_secs_f64();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::config::HostConfig;
    use rand::SeedableRng;

    fn params() -> LiveParams {
        LiveParams {
            cold_start: Duration::from_millis(10),
            seed: 1,
            tick: Duration::from_secs(1),
            keepalive: HostConfig::embedded().keepalive,
        }
    }

    fn at(s: f64, run_ms: u64) -> Arrival {
        (Duration::from_secs_f64(s), Duration::from_millis(run_ms))
    }

    /// Two requests ten minutes apart under a 5-minute fixed keep-alive: both cold (the
    /// first from nothing, the second after the scale to zero), each waiting the start.
    /// Under a 20-minute one the second is warm, and the instance idles the 10 minutes
    /// between and 20 minutes after the second.
    #[test]
    fn a_keep_alive_decides_whether_the_next_request_is_cold() {
        let two = [at(30.0, 100), at(630.0, 100)];
        let five = simulate(&two, 60, 1024.0, &PolicySpec::Fixed(5), &params());
        assert_eq!((five.invocations, five.cold_starts, five.starts), (2, 2, 2));
        assert!(
            (five.waits.percentile_ms(99.0) - 10.0).abs() < 0.5,
            "{five:?}"
        );
        let twenty = simulate(&two, 60, 1024.0, &PolicySpec::Fixed(20), &params());
        assert_eq!((twenty.cold_starts, twenty.starts), (1, 1));
        // Idle from the first answer (30 s + the start + 0.1 s) to the second arrival, then
        // 20 minutes from the second answer.
        let want = (630.0 - 30.11) + 1200.0;
        assert!(
            (twenty.idle_instance_s - want).abs() < 1.5,
            "{}",
            twenty.idle_instance_s
        );
        assert!(
            five.idle_instance_s < 2.0 * 6.0 * 60.0,
            "{}",
            five.idle_instance_s
        );
    }

    /// A burst of 50 requests at once from zero: the pool grows to serve them all, none is
    /// lost, and most start within a cold start or two.
    #[test]
    fn a_burst_from_zero_grows_the_pool_and_serves_everything() {
        let burst: Vec<Arrival> = (0..50).map(|i| at(10.0 + i as f64 * 1e-4, 200)).collect();
        let o = simulate(&burst, 2, 512.0, &PolicySpec::Predictive(None), &params());
        assert_eq!(o.invocations, 50);
        assert!(o.cold_starts >= 1 && o.starts >= 10, "{o:?}");
        assert!(o.per_minute_peak[0] >= 10, "{:?}", o.per_minute_peak);
        assert!(o.waits.percentile_ms(50.0) < 250.0, "{o:?}");
    }

    #[test]
    fn arrivals_are_seeded_and_inside_their_minute() {
        let pct = [(0.0, 10.0), (50.0, 20.0), (100.0, 100.0)];
        let a = arrivals(&[3, 0, 2], &pct, &mut StdRng::seed_from_u64(7));
        let b = arrivals(&[3, 0, 2], &pct, &mut StdRng::seed_from_u64(7));
        assert_eq!(a, b);
        assert_eq!(a.len(), 5);
        assert!(a[..3].iter().all(|x| x.0 < Duration::from_secs(60)));
        assert!(a[3..].iter().all(|x| x.0 >= Duration::from_secs(120)));
        assert!(a
            .iter()
            .all(|x| (10..=100).contains(&(x.1.as_millis() as u64))));
        assert_eq!(execution_time(&pct, 75.0), Duration::from_millis(60));
    }
}
