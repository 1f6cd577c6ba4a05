//! Fitting a sandbox's pool into what the node granted. Pure: no ledger, no cgroup.

use surge_runtime::cgroup::SandboxLimits;

use super::Resources;
use crate::manifest::CPU_MIN_MILLICORES;

/// What a pool of a function's instances asks of its cgroup, per instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolDemand {
    /// The memory quota × the executions one instance runs at once.
    pub memory_per_instance_bytes: u64,
    /// The guaranteed CPU per instance: the quota.
    pub cpu_per_instance_millicores: u64,
    /// The most CPU one instance may burst to with CPU the others leave idle (the quota
    /// itself when the function does not burst).
    pub cpu_ceiling_per_instance_millicores: u64,
    /// The node's CPU: no ceiling is above it.
    pub node_cpu_millicores: u64,
    /// The sandbox process's own memory, beside its instances.
    pub overhead_bytes: u64,
    pub pids_max: u64,
    /// The pool size asked for.
    pub instances: u32,
}

impl PoolDemand {
    /// The limits for a pool of `n` instances (at least one: a sandbox always holds room
    /// for the instance it serves with).
    pub fn limits(&self, n: u32) -> SandboxLimits {
        let n = n.max(1) as u64;
        SandboxLimits {
            memory_bytes: self
                .memory_per_instance_bytes
                .saturating_mul(n)
                .saturating_add(self.overhead_bytes),
            cpu_millicores: self.cpu_per_instance_millicores.saturating_mul(n),
            cpu_ceiling_millicores: self.ceiling(n),
            pids_max: self.pids_max,
        }
    }

    /// The CPU ceiling of `n` instances: theirs (never below their guarantee), at most the
    /// node's.
    fn ceiling(&self, n: u64) -> u64 {
        self.cpu_ceiling_per_instance_millicores
            .max(self.cpu_per_instance_millicores)
            .saturating_mul(n)
            .min(self.node_cpu_millicores)
    }

    /// What the whole demand asks of the node (the ceiling is not asked: CPU above the
    /// guarantee is only what others leave idle).
    pub fn resources(&self) -> Resources {
        self.limits(self.instances).into()
    }
}

/// The limits a grant allows, and the instances they hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fitted {
    pub limits: SandboxLimits,
    /// At most the demand's instances; fewer when the granted memory is short, 0 when it
    /// cannot hold even one (the limits are then one instance's).
    pub instances: u32,
}

/// Fit `demand` into `grant`: memory decides how many instances fit (memory cannot be
/// taken back from a running guest, so a pool is cut rather than squeezed); CPU is cut to
/// the grant instead, never below the kernel's minimum CFS quota. The ceiling is not cut:
/// a guarantee cut under contention still bursts into CPU the others do not use.
pub fn fit(grant: Resources, demand: &PoolDemand) -> Fitted {
    let mut instances = demand.instances;
    let mut limits = demand.limits(instances);
    if grant.memory_bytes < limits.memory_bytes {
        instances = (1..demand.instances)
            .rev()
            .find(|&n| demand.limits(n).memory_bytes <= grant.memory_bytes)
            .unwrap_or(0);
        limits = demand.limits(instances);
    }
    // The guarantee is a weight (`cpu.shares` / `cpu.weight`), which has no floor that
    // matters: the grant stands, so Σ guarantees ≤ the node holds with a thousand
    // functions too. The ceiling is a CFS quota, which the kernel keeps ≥ 1 ms per period.
    limits.cpu_millicores = limits.cpu_millicores.min(grant.cpu_millicores);
    limits.cpu_ceiling_millicores = limits
        .cpu_ceiling_millicores
        .max(limits.cpu_millicores)
        .max(CPU_MIN_MILLICORES);
    Fitted { limits, instances }
}

/// The largest memory quota per execution that `grant_memory_bytes` holds for
/// `executions` executions beside the sandbox's `overhead_bytes`.
pub fn memory_room(grant_memory_bytes: u64, overhead_bytes: u64, executions: u32) -> u64 {
    grant_memory_bytes.saturating_sub(overhead_bytes) / executions.max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: u64 = 1 << 20;

    fn demand(instances: u32) -> PoolDemand {
        PoolDemand {
            memory_per_instance_bytes: 100 * MI,
            cpu_per_instance_millicores: 250,
            cpu_ceiling_per_instance_millicores: 1000,
            node_cpu_millicores: 1900,
            overhead_bytes: 20 * MI,
            pids_max: 64,
            instances,
        }
    }

    fn r(memory_bytes: u64, cpu_millicores: u64) -> Resources {
        Resources {
            memory_bytes,
            cpu_millicores,
        }
    }

    #[test]
    fn a_full_grant_holds_the_whole_pool() {
        let d = demand(4);
        let f = fit(d.resources(), &d);
        assert_eq!(f.instances, 4);
        assert_eq!(f.limits.memory_bytes, 420 * MI);
        assert_eq!(f.limits.cpu_millicores, 1000);
        assert_eq!(
            f.limits.cpu_ceiling_millicores, 1900,
            "4 × 1000m, cut to the node"
        );
        assert_eq!(f.limits.pids_max, 64);
        assert_eq!(demand(1).limits(1).cpu_ceiling_millicores, 1000);
        let over = PoolDemand {
            cpu_per_instance_millicores: 1000,
            ..demand(4)
        };
        assert_eq!(
            fit(r(over.resources().memory_bytes, 650), &over).limits,
            SandboxLimits {
                cpu_millicores: 650,
                cpu_ceiling_millicores: 1900,
                ..over.limits(4)
            },
            "a guarantee above the node is cut to the grant, its ceiling to the node"
        );
        let hard = PoolDemand {
            cpu_ceiling_per_instance_millicores: 250,
            ..demand(4)
        };
        assert_eq!(
            fit(hard.resources(), &hard).limits.cpu_ceiling_millicores,
            1000,
            "no burst: the ceiling is the guarantee"
        );
    }

    #[test]
    fn short_memory_cuts_the_pool_to_what_fits() {
        let d = demand(4);
        // 3 instances need 320Mi; 319Mi holds 2.
        let f = fit(r(319 * MI, 1000), &d);
        assert_eq!(f.instances, 2);
        assert_eq!(f.limits.memory_bytes, 220 * MI);
        assert_eq!(
            f.limits.cpu_millicores, 500,
            "the CPU of the instances that fit"
        );
        assert_eq!(fit(r(320 * MI, 1000), &d).instances, 3);
    }

    #[test]
    fn not_even_one_instance() {
        let d = demand(4);
        let f = fit(r(100 * MI, 1000), &d);
        assert_eq!(f.instances, 0);
        assert_eq!(
            f.limits,
            d.limits(1),
            "one instance's limits, for the error"
        );
        let f = fit(r(0, 0), &demand(0));
        assert_eq!(f.instances, 0);
    }

    #[test]
    fn short_cpu_is_cut_not_refused() {
        let d = demand(4);
        let f = fit(r(d.resources().memory_bytes, 300), &d);
        assert_eq!(f.instances, 4);
        assert_eq!(f.limits.cpu_millicores, 300);
        assert_eq!(
            f.limits.cpu_ceiling_millicores, 1900,
            "the guarantee is cut, the ceiling is not"
        );
        let f = fit(r(d.resources().memory_bytes, 0), &d);
        assert_eq!(f.limits.cpu_millicores, 0, "no guarantee is invented");
        let hard = PoolDemand {
            cpu_ceiling_per_instance_millicores: d.cpu_per_instance_millicores,
            node_cpu_millicores: 1,
            ..d
        };
        assert_eq!(
            fit(r(d.resources().memory_bytes, 0), &hard)
                .limits
                .cpu_ceiling_millicores,
            CPU_MIN_MILLICORES,
            "the kernel's floor on a CFS quota"
        );
    }

    #[test]
    fn memory_room_is_the_inverse_of_limits() {
        let d = demand(3);
        let l = d.limits(3);
        assert_eq!(memory_room(l.memory_bytes, d.overhead_bytes, 3), 100 * MI);
        assert_eq!(memory_room(10, 20, 3), 0);
        assert_eq!(memory_room(30, 0, 0), 30);
    }
}
