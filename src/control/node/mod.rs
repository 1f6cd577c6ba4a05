//! The node: its capacity, and what every function's sandbox holds of it.
//!
//! Invariant: Σ over sandboxes of the limits written to their cgroups (memory, CPU) never
//! exceeds the capacity. A sandbox asks [`Node::request`] before it writes larger limits and
//! reports what it wrote with [`Node::commit`]; a grant never exceeds what the others hold
//! subtracted from the capacity.
//!
//! When demands exceed the capacity, [`allocator::allocate`] divides it by priority and
//! weight. Memory already held is a floor: it cannot be taken back without killing the
//! function, so only growth is divided (a scale-up that does not fit is refused). CPU is
//! compressible: a function above its fair share gives the excess back at its next refit,
//! which the vertical control loop triggers for the sandboxes off their share
//! ([`Node::cpu_off_share`]).

pub mod allocator;
pub mod fit;

use std::collections::HashMap;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use surge_runtime::cgroup::SandboxLimits;

use crate::manifest::config::NodeConfig;
use crate::manifest::CPU_MIN_MILLICORES;
use allocator::Claim;

/// An amount of both resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub memory_bytes: u64,
    pub cpu_millicores: u64,
}

impl From<SandboxLimits> for Resources {
    fn from(l: SandboxLimits) -> Self {
        Resources {
            memory_bytes: l.memory_bytes,
            cpu_millicores: l.cpu_millicores,
        }
    }
}

/// One sandbox's standing with the node.
#[derive(Clone, Copy, Debug)]
struct Holder {
    /// What its cgroup holds now.
    committed: Resources,
    /// What it last asked for.
    demand: Resources,
    weight: u32,
    priority: u8,
}

/// The node's capacity and ledger.
pub struct Node {
    capacity: Resources,
    holders: Mutex<HashMap<String, Holder>>,
}

/// What the node reports for status and metrics.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeStatus {
    pub capacity: Resources,
    pub committed: Resources,
    pub demand: Resources,
}

impl NodeStatus {
    /// What no sandbox holds or has been granted.
    pub fn free(&self) -> Resources {
        Resources {
            memory_bytes: self
                .capacity
                .memory_bytes
                .saturating_sub(self.committed.memory_bytes),
            cpu_millicores: self
                .capacity
                .cpu_millicores
                .saturating_sub(self.committed.cpu_millicores),
        }
    }
}

impl Node {
    pub fn new(capacity: Resources) -> Self {
        Node {
            capacity,
            holders: Mutex::new(HashMap::new()),
        }
    }

    /// The capacity from the config, or the machine's less the reserves.
    pub fn from_config(c: &NodeConfig) -> Self {
        let machine = machine_capacity();
        Node::new(Resources {
            memory_bytes: c
                .memory
                .map(|m| m.0)
                .unwrap_or_else(|| machine.memory_bytes.saturating_sub(c.reserve_memory.0)),
            cpu_millicores: c.cpu.map(|m| m.0 as u64).unwrap_or_else(|| {
                machine
                    .cpu_millicores
                    .saturating_sub(c.reserve_cpu.0 as u64)
            }),
        })
    }

    pub fn capacity(&self) -> Resources {
        self.capacity
    }

    /// Ask for `want` for the sandbox `key`. The grant is at most `want`, at most the
    /// capacity the others leave, and at most the fair share by priority and weight among
    /// everything asked for; it never takes back memory the sandbox holds.
    pub fn request(&self, key: &str, want: Resources, weight: u32, priority: u8) -> Resources {
        let mut holders = self.holders.lock();
        let me = holders.entry(key.to_string()).or_insert(Holder {
            committed: Resources::default(),
            demand: want,
            weight,
            priority,
        });
        me.demand = want;
        me.weight = weight;
        me.priority = priority;
        let mine = *me;
        let keys: Vec<&String> = holders.keys().collect();
        let idx = keys
            .iter()
            .position(|k| k.as_str() == key)
            .expect("inserted");
        let all: Vec<Holder> = keys.iter().map(|k| holders[*k]).collect();
        let grant = |cap: u64, pick: fn(&Resources) -> u64, cpu: bool| -> u64 {
            let claims: Vec<Claim> = all.iter().map(|h| claim(h, pick, cpu)).collect();
            let fair = allocator::allocate(cap, &claims)[idx];
            let free = cap.saturating_sub(held_by_others(&holders, key, pick));
            let floor = if cpu { 0 } else { pick(&mine.committed) };
            pick(&mine.demand).min(fair.max(floor)).min(free)
        };
        let granted = Resources {
            memory_bytes: grant(self.capacity.memory_bytes, |r| r.memory_bytes, false),
            cpu_millicores: grant(self.capacity.cpu_millicores, |r| r.cpu_millicores, true),
        };
        // Reserved until the caller commits what it really wrote: two grants in flight at
        // once (two cold starts, each waiting on its cgroup) must not both count the same
        // free capacity.
        let me = holders.get_mut(key).expect("inserted");
        me.committed = Resources {
            memory_bytes: me.committed.memory_bytes.max(granted.memory_bytes),
            cpu_millicores: me.committed.cpu_millicores.max(granted.cpu_millicores),
        };
        granted
    }

    /// Record what `key`'s cgroup holds now (after a write, or a failed one).
    pub fn commit(&self, key: &str, held: Resources) {
        if let Some(h) = self.holders.lock().get_mut(key) {
            h.committed = held;
        }
    }

    /// The sandbox is gone: everything it held is free.
    pub fn release(&self, key: &str) {
        self.holders.lock().remove(key);
    }

    /// The memory `key` could hold: the capacity less what every other sandbox holds (or
    /// has been granted and not yet committed).
    pub fn memory_free_for(&self, key: &str) -> u64 {
        let holders = self.holders.lock();
        let others = held_by_others(&holders, key, |r| r.memory_bytes);
        self.capacity.memory_bytes.saturating_sub(others)
    }

    /// The sandboxes whose CPU guarantee is not their fair share of the node's CPU now:
    /// those above it must give the excess back, those below may take it. Only they refit.
    /// (Asking every sandbox to refit while CPU was contested cost a thousand functions an
    /// allocation each, every interval, on the gateway's threads: a 40 ms stall a second.)
    pub fn cpu_off_share(&self) -> Vec<String> {
        let holders = self.holders.lock();
        let pick = |r: &Resources| r.cpu_millicores;
        let claims: Vec<Claim> = holders.values().map(|h| claim(h, pick, true)).collect();
        let fair = allocator::allocate(self.capacity.cpu_millicores, &claims);
        holders
            .iter()
            .zip(fair)
            .filter(|((_, h), fair)| {
                h.committed.cpu_millicores != h.demand.cpu_millicores.min(*fair)
            })
            .map(|((k, _), _)| k.clone())
            .collect()
    }

    pub fn status(&self) -> NodeStatus {
        let holders = self.holders.lock();
        let sum = |f: fn(&Holder) -> Resources| {
            holders
                .values()
                .fold(Resources::default(), |a, h| Resources {
                    memory_bytes: a.memory_bytes + f(h).memory_bytes,
                    cpu_millicores: a.cpu_millicores + f(h).cpu_millicores,
                })
        };
        NodeStatus {
            capacity: self.capacity,
            committed: sum(|h| h.committed),
            demand: sum(|h| h.demand),
        }
    }
}

/// `h`'s claim on one resource. Fairness is over what each asks for in all. Memory a
/// sandbox already holds above its fair share is not taken back (see [`Node::request`]),
/// but it does not shrink anyone's share either; CPU keeps a minimum each, divided in turn
/// when the minimums alone exceed the node.
fn claim(h: &Holder, pick: fn(&Resources) -> u64, cpu: bool) -> Claim {
    let floor = if cpu {
        pick(&h.demand).min(CPU_MIN_MILLICORES)
    } else {
        0
    };
    Claim {
        floor,
        demand: pick(&h.demand),
        weight: h.weight,
        priority: h.priority,
    }
}

/// What every sandbox but `key` holds (or has been granted and not yet committed).
fn held_by_others(
    holders: &HashMap<String, Holder>,
    key: &str,
    pick: fn(&Resources) -> u64,
) -> u64 {
    holders
        .iter()
        .filter(|(k, _)| k.as_str() != key)
        .map(|(_, h)| pick(&h.committed))
        .sum()
}

/// The machine's cores and memory, or the host's own cgroup limits where lower.
pub fn machine_capacity() -> Resources {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(u64::MAX, |kib| kib * 1024);
    let own = surge_runtime::cgroup::parse_proc_cgroup(
        &std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
    );
    let read = |p: String| std::fs::read_to_string(p).ok();
    // v1 memory.limit_in_bytes, or v2 memory.max ("max" parses as none).
    let cgroup_mem = own
        .get("memory")
        .and_then(|p| read(format!("/sys/fs/cgroup/memory{p}/memory.limit_in_bytes")))
        .or_else(|| {
            own.get("")
                .and_then(|p| read(format!("/sys/fs/cgroup{p}/memory.max")))
        })
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    Resources {
        memory_bytes: mem_total.min(cgroup_mem),
        // available_parallelism already honours the host's own CPU quota and affinity.
        cpu_millicores: cores * 1000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(memory_bytes: u64, cpu_millicores: u64) -> Resources {
        Resources {
            memory_bytes,
            cpu_millicores,
        }
    }

    #[test]
    fn grants_fit_and_never_exceed_capacity() {
        let n = Node::new(r(1000, 2000));
        let g = n.request("a", r(600, 1500), 1, 0);
        assert_eq!(g, r(600, 1500), "alone, a feasible demand is met");
        n.commit("a", g);
        // b asks for more than is left: memory is refused beyond the free part (a's is a
        // floor), CPU is limited to what a leaves until a refits.
        let g = n.request("b", r(600, 1500), 1, 0);
        assert_eq!(g.memory_bytes, 400);
        assert_eq!(g.cpu_millicores, 500);
        n.commit("b", g);
        let mut off = n.cpu_off_share();
        off.sort();
        assert_eq!(off, ["a", "b"], "a above its fair half, b below");
        // a refits: its CPU comes down to the fair half, its memory stays.
        let g = n.request("a", r(600, 1500), 1, 0);
        assert_eq!(g, r(600, 1000));
        n.commit("a", g);
        let g = n.request("b", r(600, 1500), 1, 0);
        assert_eq!(g, r(400, 1000));
        n.commit("b", g);
        let s = n.status();
        assert!(s.committed.memory_bytes <= 1000 && s.committed.cpu_millicores <= 2000);
        assert!(n.cpu_off_share().is_empty(), "both at their fair half");
        assert_eq!(n.memory_free_for("b"), 400, "a holds 600");
        assert_eq!(n.memory_free_for("c"), 0, "a and b hold it all");
        n.release("a");
        assert_eq!(n.memory_free_for("b"), 1000);
        let g = n.request("b", r(600, 1500), 1, 0);
        assert_eq!(g, r(600, 1500), "freed capacity goes to who asks");
    }

    #[test]
    fn a_thousand_minimums_share_the_node_and_then_rest() {
        // Each asks for 50m, and the 10m minimums alone are 5× the node: they are divided,
        // the guarantees sum to the node at most, and once every sandbox has refitted to
        // its share none is asked to refit again.
        let n = Node::new(r(1 << 40, 1900));
        let keys: Vec<String> = (0..1000).map(|i| format!("e{i}-v1")).collect();
        for k in &keys {
            let g = n.request(k, r(20 << 20, 50), 1, 0);
            n.commit(k, g);
        }
        for _ in 0..3 {
            for k in n.cpu_off_share() {
                let g = n.request(&k, r(20 << 20, 50), 1, 0);
                n.commit(&k, g);
            }
        }
        assert!(n.cpu_off_share().is_empty());
        let s = n.status();
        assert!(s.committed.cpu_millicores <= 1900, "{:?}", s.committed);
        assert!(s.committed.cpu_millicores >= 1000, "{:?}", s.committed);
    }

    #[test]
    fn grants_in_flight_are_reserved() {
        let n = Node::new(r(1000, 1000));
        // Both ask before either commits (two cold starts waiting on their cgroups).
        let a = n.request("a", r(600, 600), 1, 0);
        let b = n.request("b", r(600, 600), 1, 0);
        assert!(a.memory_bytes + b.memory_bytes <= 1000, "{a:?} + {b:?}");
        assert!(a.cpu_millicores + b.cpu_millicores <= 1000, "{a:?} + {b:?}");
        assert!(n.status().committed.memory_bytes <= 1000);
        // A commit below the grant gives the rest back, up to b's fair half while a
        // still asks for 600.
        n.commit("a", r(100, 100));
        let b = n.request("b", r(600, 600), 1, 0);
        assert_eq!(b, r(500, 500));
        n.release("a");
        let b = n.request("b", r(600, 600), 1, 0);
        assert_eq!(b, r(600, 600));
    }

    #[test]
    fn weight_decides_contested_growth() {
        let n = Node::new(r(900, 900));
        n.request("a", r(0, 0), 1, 0);
        // b asks and holds nothing yet (its grant was not written).
        n.request("b", r(900, 900), 2, 0);
        n.commit("b", r(0, 0));
        // Both ask for 900 with weights 1 and 2: a gets a third, b two thirds (of the CPU
        // above the 10m minimum each keeps).
        let ga = n.request("a", r(900, 900), 1, 0);
        assert_eq!(ga, r(300, 10 + 880 / 3));
        n.commit("a", ga);
        let gb = n.request("b", r(900, 900), 2, 0);
        assert_eq!(gb, r(600, 900 - ga.cpu_millicores));
        n.commit("b", gb);
        let s = n.status();
        assert_eq!(s.committed, r(900, 900), "all of it, and no more");
    }
}
