//! The limits one sandbox cgroup carries, and the pure conversions from them to the values
//! the kernel files take (the host computes the limits of a pool: `control/node/fit.rs`). Units are in the names: `_bytes`, `_us`, `_millicores`.

use serde::{Deserialize, Serialize};

/// CFS period used for every sandbox: 100 ms, the kernel default.
pub const CPU_PERIOD_US: u64 = 100_000;
/// The kernel refuses a CFS quota below 1 ms.
pub const CPU_QUOTA_MIN_US: u64 = 1_000;

/// What a sandbox cgroup is limited to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxLimits {
    pub memory_bytes: u64,
    pub cpu_millicores: u64,
    pub pids_max: u64,
}

impl SandboxLimits {
    /// cgroup v1 `cpu.cfs_quota_us` for [`CPU_PERIOD_US`].
    pub fn cfs_quota_us(&self) -> u64 {
        millicores_to_quota_us(self.cpu_millicores, CPU_PERIOD_US)
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
            pids_max: 64,
        };
        assert_eq!(l.cfs_quota_us(), 50_000);
        assert_eq!(l.cpu_max(), "50000 100000");
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
