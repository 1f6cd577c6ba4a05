//! The limits one sandbox cgroup carries, and the pure conversions from them to the values
//! the kernel files take (the host computes the limits of a pool: `control/node/fit.rs`). Units are in the names: `_bytes`, `_us`, `_millicores`.

use serde::{Deserialize, Serialize};

/// CFS period used for every sandbox: 100 ms, the kernel default.
pub const CPU_PERIOD_US: u64 = 100_000;
/// The kernel refuses a CFS quota below 1 ms.
pub const CPU_QUOTA_MIN_US: u64 = 1_000;

/// The kernel's range for cgroup v1 `cpu.shares`.
pub const CPU_SHARES_MIN: u64 = 2;
pub const CPU_SHARES_MAX: u64 = 262_144;

/// What a sandbox cgroup is limited to. CPU has two figures, as a Kubernetes pod's request
/// and limit: the guarantee, which the node's ledger counts (Σ ≤ the node) and the kernel
/// enforces as a weight among the sandboxes, and the ceiling, the CFS quota, up to which
/// the sandbox may use CPU that the others leave idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxLimits {
    pub memory_bytes: u64,
    /// Guaranteed CPU: written as `cpu.shares` (v1) / `cpu.weight` (v2), in proportion.
    pub cpu_millicores: u64,
    /// Most CPU the cgroup may use: the CFS quota. At least `cpu_millicores`.
    pub cpu_ceiling_millicores: u64,
    pub pids_max: u64,
}

impl SandboxLimits {
    /// cgroup v1 `cpu.cfs_quota_us` for [`CPU_PERIOD_US`]: the ceiling.
    pub fn cfs_quota_us(&self) -> u64 {
        millicores_to_quota_us(
            self.cpu_ceiling_millicores.max(self.cpu_millicores),
            CPU_PERIOD_US,
        )
    }

    /// cgroup v1 `cpu.shares` for the guarantee: 1024 per core, as the kernel's default
    /// weight of one task and Kubernetes' conversion of a CPU request.
    pub fn cpu_shares(&self) -> u64 {
        (self.cpu_millicores.saturating_mul(1024) / 1000).clamp(CPU_SHARES_MIN, CPU_SHARES_MAX)
    }

    /// cgroup v2 `cpu.weight` (1..=10000) for the guarantee: the shares mapped linearly
    /// onto the weight's range, as Kubernetes and systemd map them.
    pub fn cpu_weight(&self) -> u64 {
        1 + (self.cpu_shares() - CPU_SHARES_MIN) * 9_999 / (CPU_SHARES_MAX - CPU_SHARES_MIN)
    }

    /// cgroup v2 `cpu.max`: `"<quota> <period>"`.
    pub fn cpu_max(&self) -> String {
        format!("{} {}", self.cfs_quota_us(), CPU_PERIOD_US)
    }
}

/// Millicores to a CFS quota for `period_us`: 1000m is one full period. Rounds up, so a
/// quota is never below what was asked, and never below the kernel's 1 ms minimum.
pub fn millicores_to_quota_us(millicores: u64, period_us: u64) -> u64 {
    let q = millicores.saturating_mul(period_us).div_ceil(1000);
    q.max(CPU_QUOTA_MIN_US)
}

/// A CFS quota back to millicores (rounded down): the inverse of [`millicores_to_quota_us`]
/// wherever the quota is above the kernel minimum.
pub fn quota_us_to_millicores(quota_us: u64, period_us: u64) -> u64 {
    quota_us.saturating_mul(1000) / period_us.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(millicores_to_quota_us(1000, 100_000), 100_000);
        assert_eq!(millicores_to_quota_us(250, 100_000), 25_000);
        assert_eq!(millicores_to_quota_us(2500, 100_000), 250_000);
        assert_eq!(
            millicores_to_quota_us(1, 100_000),
            1_000,
            "clamped to the kernel minimum"
        );
        let l = SandboxLimits {
            memory_bytes: 320 << 20,
            cpu_millicores: 500,
            cpu_ceiling_millicores: 500,
            pids_max: 64,
        };
        assert_eq!(l.cfs_quota_us(), 50_000);
        assert_eq!(l.cpu_max(), "50000 100000");
        assert_eq!(l.cpu_shares(), 512);
        let burst = SandboxLimits {
            cpu_ceiling_millicores: 1900,
            ..l
        };
        assert_eq!(burst.cpu_max(), "190000 100000", "the quota is the ceiling");
        assert_eq!(burst.cpu_shares(), 512, "the weight is the guarantee");
        let below = SandboxLimits {
            cpu_ceiling_millicores: 100,
            ..l
        };
        assert_eq!(below.cfs_quota_us(), 50_000, "never below the guarantee");
    }

    #[test]
    fn weights_follow_the_guarantee() {
        let at = |m: u64| SandboxLimits {
            memory_bytes: 0,
            cpu_millicores: m,
            cpu_ceiling_millicores: m,
            pids_max: 1,
        };
        assert_eq!(at(1000).cpu_shares(), 1024);
        assert_eq!(at(0).cpu_shares(), CPU_SHARES_MIN);
        assert_eq!(at(10_000_000).cpu_shares(), CPU_SHARES_MAX);
        assert_eq!(at(0).cpu_weight(), 1);
        assert_eq!(at(10_000_000).cpu_weight(), 10_000);
        // Kubernetes' figures: 1024 shares (one core) is weight 39.
        assert_eq!(at(1000).cpu_weight(), 39);
        let mut prev = (0, 0);
        for m in (0..300_000).step_by(7) {
            let now = (at(m).cpu_shares(), at(m).cpu_weight());
            assert!(now.0 >= prev.0 && now.1 >= prev.1, "monotonic at {m}m");
            prev = now;
        }
    }

    /// Property over a deterministic sweep: the conversion never gives less CPU than asked,
    /// round-trips exactly above the minimum, and is monotonic.
    #[test]
    fn millicores_quota_properties() {
        for period in [10_000u64, 100_000, 250_000, 1_000_000] {
            let mut prev = 0;
            for m in 1..20_000u64 {
                let q = millicores_to_quota_us(m, period);
                assert!(q >= prev, "monotonic at {m}m/{period}");
                prev = q;
                assert!(
                    q * 1000 >= m * period,
                    "never under-provisions at {m}m/{period}"
                );
                assert!(q >= CPU_QUOTA_MIN_US);
                if m * period >= CPU_QUOTA_MIN_US * 1000 && (m * period) % 1000 == 0 {
                    assert_eq!(
                        quota_us_to_millicores(q, period),
                        m,
                        "round trip at {m}m/{period}"
                    );
                }
            }
        }
    }
}
