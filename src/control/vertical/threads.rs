//! How many worker threads a sandbox serves new connections on. Pure.
//!
//! Measured on two cores (BENCHMARKS.md, "The hop"): a second sandbox thread costs light
//! guests 17–20 % (hello, echo: each wake-up and the gateway's own thread cost more than
//! the guest's microseconds), and gives a CPU-heavy guest 85 % (spin, ~4 ms of CPU an
//! event). So the count follows what a request costs: the base (`sandbox.threads`' auto
//! rule) for light guests, one more per interval while a heavy guest keeps its threads
//! busy, and back down when it no longer does.

/// A request costing at least this much CPU makes a guest heavy; below half of it, light.
pub const HEAVY_CPU_PER_REQUEST_US: f64 = 1_000.0;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observed {
    /// The sandbox's CPU over the interval, per request served in it (None: none served).
    pub cpu_per_request_us: Option<f64>,
    /// The sandbox's whole CPU over the interval.
    pub used_millicores: u64,
    /// Threads taking new connections now.
    pub active: u32,
    /// Light guests' count, and the most the sandbox has (and its CPU ceiling allows).
    pub base: u32,
    pub max: u32,
}

pub fn decide(o: Observed) -> u32 {
    let max = o.max.max(1);
    let base = o.base.clamp(1, max);
    let active = o.active.clamp(base, max);
    let Some(per_request) = o.cpu_per_request_us else {
        // Idle: keep what it had, so the next burst does not start short.
        return active;
    };
    if per_request < HEAVY_CPU_PER_REQUEST_US / 2.0 {
        return base;
    }
    let busy = |threads: u32| o.used_millicores * 10 >= u64::from(threads) * 1_000 * 8;
    if per_request >= HEAVY_CPU_PER_REQUEST_US && busy(active) {
        return (active + 1).min(max);
    }
    if active > base && o.used_millicores * 2 < u64::from(active - 1) * 1_000 {
        return active - 1;
    }
    active
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(per: Option<f64>, used: u64, active: u32) -> Observed {
        Observed {
            cpu_per_request_us: per,
            used_millicores: used,
            active,
            base: 1,
            max: 2,
        }
    }

    #[test]
    fn threads_follow_what_a_request_costs() {
        // (observed, threads): heavy and saturating grows by one, at most max; light goes
        // to the base at once; heavy but idle threads shrink by one; idle keeps.
        let table = [
            (o(Some(4_000.0), 990, 1), 2),
            (o(Some(4_000.0), 1_900, 2), 2),
            (o(Some(4_000.0), 500, 1), 1),
            (o(Some(40.0), 1_000, 2), 1),
            (o(Some(40.0), 1_000, 1), 1),
            (o(Some(4_000.0), 300, 2), 1),
            (o(Some(4_000.0), 1_200, 2), 2),
            (o(Some(700.0), 1_000, 2), 2),
            (o(None, 0, 2), 2),
            (o(None, 0, 7), 2),
        ];
        for (obs, want) in table {
            assert_eq!(decide(obs), want, "{obs:?}");
        }
        let wide = Observed {
            max: 8,
            base: 2,
            ..o(Some(2_000.0), 2_500, 3)
        };
        assert_eq!(decide(wide), 4);
        assert_eq!(
            decide(Observed { active: 0, ..wide }),
            3,
            "counted from the base, never below it"
        );
        assert_eq!(
            decide(Observed {
                active: 0,
                cpu_per_request_us: None,
                ..wide
            }),
            2
        );
    }
}
