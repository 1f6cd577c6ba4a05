//! One interval's sample, from two readings of a sandbox cgroup's cumulative counters and
//! the sandbox's own memory reports: CPU per busy instance, the throttled fraction, and
//! out-of-memory events. Pure: the loop reads the files and the clock, this only counts.

use std::time::Duration;

use surge_runtime::cgroup::Usage;

use super::recommender::Sample;
use crate::manifest::Quota;

/// The least busy-instance count CPU is divided by: an idle sandbox's own background CPU
/// would otherwise be blown up into a huge per-instance figure.
pub const MIN_BUSY: f64 = 0.05;

/// How busy the function was over the interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Busy {
    /// Instances busy on average (requests inside ÷ per instance, at most the ready ones).
    pub instances: f64,
    /// Whether requests arrived or ran in the interval.
    pub active: bool,
}

/// What the sandbox reported about wasm memory over the interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WasmMemory {
    /// Highest linear memory of one instance (0: nothing ran).
    pub peak_bytes: u64,
    /// Largest total a refused grow asked for (0: none).
    pub denied_bytes: u64,
}

/// The interval's sample for the recommender, and the figures status shows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IntervalSample {
    pub sample: Sample,
    /// CPU of the whole sandbox over the interval, millicores; None: no baseline (the first
    /// reading, or a new cgroup whose counters restarted).
    pub cpu_total_millicores: Option<u64>,
}

/// The sample for the interval from `previous` to `current`, `elapsed` apart.
///
/// - `previous` is None for the first reading of a cgroup; a CPU counter below the previous
///   one means the counters restarted (a new cgroup the caller did not see): no baseline.
/// - CPU is sampled only for active intervals: unlike a long-running pod, an idle function's
///   quota matters only when the next request comes, and idle seconds (most of a function's
///   life) would drag the target to the minimum.
/// - CPU is per busy instance-second: an idle instance uses (next to) no CPU, so dividing
///   by the ready ones, or by the whole interval when one instance was busy for a tenth of
///   it, would under-state what a request needs while it runs.
/// - Out of memory: an instance refused memory asked for `denied_bytes`; a cgroup OOM kill
///   means the sandbox as a whole hit its limit, so each instance held about its quota.
pub fn interval_sample(
    previous: Option<&Usage>,
    current: &Usage,
    elapsed: Duration,
    busy: Busy,
    wasm: WasmMemory,
    quota: Quota,
) -> IntervalSample {
    let baseline = previous.filter(|u0| current.cpu_usage_ns >= u0.cpu_usage_ns);
    let mut cpu_total = None;
    let mut throttled_fraction = 0.0;
    let mut cgroup_oom = false;
    if let Some(u0) = baseline {
        let used_ns = (current.cpu_usage_ns - u0.cpu_usage_ns) as u128;
        // ns of CPU per ns of wall time, in thousandths: millicores. None when no time passed.
        cpu_total = (used_ns * 1000)
            .checked_div(elapsed.as_nanos())
            .map(|m| m as u64);
        let periods = current.nr_periods.saturating_sub(u0.nr_periods);
        if periods > 0 {
            throttled_fraction =
                current.nr_throttled.saturating_sub(u0.nr_throttled) as f64 / periods as f64;
        }
        cgroup_oom = current.oom_kills > u0.oom_kills;
    }
    let oom_bytes = match (wasm.denied_bytes, cgroup_oom) {
        (0, false) => None,
        (0, true) => Some(quota.memory_bytes),
        (d, _) => Some(d),
    };
    IntervalSample {
        sample: Sample {
            memory_peak_bytes: (wasm.peak_bytes > 0).then_some(wasm.peak_bytes),
            cpu_millicores: cpu_total
                .filter(|_| busy.active)
                .map(|c| (c as f64 / busy.instances.max(MIN_BUSY)) as u64),
            throttled_fraction,
            oom_bytes,
        },
        cpu_total_millicores: cpu_total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUOTA: Quota = Quota {
        memory_bytes: 128 << 20,
        cpu_millicores: 250,
    };
    const SECOND: Duration = Duration::from_secs(1);

    fn usage(cpu_ms: u64, periods: u64, throttled: u64, oom_kills: u64) -> Usage {
        Usage {
            cpu_usage_ns: cpu_ms * 1_000_000,
            nr_periods: periods,
            nr_throttled: throttled,
            oom_kills,
            ..Usage::default()
        }
    }

    fn busy(instances: f64) -> Busy {
        Busy {
            instances,
            active: true,
        }
    }

    struct Case {
        name: &'static str,
        previous: Option<Usage>,
        current: Usage,
        elapsed: Duration,
        busy: Busy,
        wasm: WasmMemory,
        cpu_total: Option<u64>,
        cpu_per_instance: Option<u64>,
        throttled: f64,
        oom: Option<u64>,
        peak: Option<u64>,
    }

    #[test]
    fn interval_samples() {
        let none = WasmMemory::default();
        let cases = [
            Case {
                name: "first reading: no baseline, no CPU",
                previous: None,
                current: usage(500, 10, 5, 1),
                elapsed: SECOND,
                busy: busy(1.0),
                wasm: none,
                cpu_total: None,
                cpu_per_instance: None,
                throttled: 0.0,
                oom: None,
                peak: None,
            },
            Case {
                name: "one busy instance at half a core",
                previous: Some(usage(1000, 10, 0, 0)),
                current: usage(1500, 20, 0, 0),
                elapsed: SECOND,
                busy: busy(1.0),
                wasm: none,
                cpu_total: Some(500),
                cpu_per_instance: Some(500),
                throttled: 0.0,
                oom: None,
                peak: None,
            },
            Case {
                name: "CPU per busy instance, not per interval",
                previous: Some(usage(0, 0, 0, 0)),
                current: usage(100, 10, 0, 0),
                elapsed: SECOND,
                busy: busy(0.25),
                wasm: none,
                cpu_total: Some(100),
                cpu_per_instance: Some(400),
                throttled: 0.0,
                oom: None,
                peak: None,
            },
            Case {
                name: "two seconds apart",
                previous: Some(usage(0, 0, 0, 0)),
                current: usage(1000, 20, 0, 0),
                elapsed: 2 * SECOND,
                busy: busy(2.0),
                wasm: none,
                cpu_total: Some(500),
                cpu_per_instance: Some(250),
                throttled: 0.0,
                oom: None,
                peak: None,
            },
            Case {
                name: "idle interval: CPU is shown but not sampled",
                previous: Some(usage(0, 0, 0, 0)),
                current: usage(3, 10, 0, 0),
                elapsed: SECOND,
                busy: Busy {
                    instances: 0.0,
                    active: false,
                },
                wasm: none,
                cpu_total: Some(3),
                cpu_per_instance: None,
                throttled: 0.0,
                oom: None,
                peak: None,
            },
            Case {
                name: "active but no instance busy on average: divided by the floor",
                previous: Some(usage(0, 0, 0, 0)),
                current: usage(5, 10, 0, 0),
                elapsed: SECOND,
                busy: busy(0.0),
                wasm: none,
                cpu_total: Some(5),
                cpu_per_instance: Some(100),
                throttled: 0.0,
                oom: None,
                peak: None,
            },
            Case {
                name: "counter reset: a new cgroup, no baseline and no OOM from old counters",
                previous: Some(usage(9000, 500, 400, 3)),
                current: usage(10, 1, 1, 0),
                elapsed: SECOND,
                busy: busy(1.0),
                wasm: none,
                cpu_total: None,
                cpu_per_instance: None,
                throttled: 0.0,
                oom: None,
                peak: None,
            },
            Case {
                name: "throttled in 3 of 10 periods",
                previous: Some(usage(0, 100, 10, 0)),
                current: usage(250, 110, 13, 0),
                elapsed: SECOND,
                busy: busy(1.0),
                wasm: none,
                cpu_total: Some(250),
                cpu_per_instance: Some(250),
                throttled: 0.3,
                oom: None,
                peak: None,
            },
            Case {
                name: "cgroup OOM kill: each instance held about its quota",
                previous: Some(usage(0, 0, 0, 1)),
                current: usage(10, 10, 0, 2),
                elapsed: SECOND,
                busy: busy(1.0),
                wasm: none,
                cpu_total: Some(10),
                cpu_per_instance: Some(10),
                throttled: 0.0,
                oom: Some(QUOTA.memory_bytes),
                peak: None,
            },
            Case {
                name: "a refused grow names what it asked for, over a cgroup kill",
                previous: Some(usage(0, 0, 0, 0)),
                current: usage(10, 10, 0, 1),
                elapsed: SECOND,
                busy: busy(1.0),
                wasm: WasmMemory {
                    peak_bytes: 100 << 20,
                    denied_bytes: 200 << 20,
                },
                cpu_total: Some(10),
                cpu_per_instance: Some(10),
                throttled: 0.0,
                oom: Some(200 << 20),
                peak: Some(100 << 20),
            },
            Case {
                name: "a refused grow on the first reading still counts",
                previous: None,
                current: usage(10, 10, 0, 0),
                elapsed: SECOND,
                busy: busy(1.0),
                wasm: WasmMemory {
                    peak_bytes: 0,
                    denied_bytes: 64 << 20,
                },
                cpu_total: None,
                cpu_per_instance: None,
                throttled: 0.0,
                oom: Some(64 << 20),
                peak: None,
            },
            Case {
                name: "no time passed: no CPU figure",
                previous: Some(usage(0, 0, 0, 0)),
                current: usage(10, 0, 0, 0),
                elapsed: Duration::ZERO,
                busy: busy(1.0),
                wasm: none,
                cpu_total: None,
                cpu_per_instance: None,
                throttled: 0.0,
                oom: None,
                peak: None,
            },
        ];
        for c in cases {
            let s = interval_sample(
                c.previous.as_ref(),
                &c.current,
                c.elapsed,
                c.busy,
                c.wasm,
                QUOTA,
            );
            assert_eq!(s.cpu_total_millicores, c.cpu_total, "{}: cpu total", c.name);
            assert_eq!(
                s.sample.cpu_millicores, c.cpu_per_instance,
                "{}: cpu per instance",
                c.name
            );
            assert!(
                (s.sample.throttled_fraction - c.throttled).abs() < 1e-9,
                "{}: throttled {}",
                c.name,
                s.sample.throttled_fraction
            );
            assert_eq!(s.sample.oom_bytes, c.oom, "{}: oom", c.name);
            assert_eq!(s.sample.memory_peak_bytes, c.peak, "{}: peak", c.name);
        }
    }
}
