//! `surge replay --model cluster`: the trace placed across N nodes, each function's pool on
//! each node run on the live model (`live.rs`), so that placements compare on what they
//! cost in cold starts and how evenly they load the nodes.
//!
//! Every invocation of the whole trace is placed in time order by one router that sees
//! every node's executions in flight (a node's gateway sees its own placements; here one
//! router places all, the upper bound of what it knows):
//!
//! - `surge`: the gateway's own placement (`cluster::placement::choose`): home by
//!   consistent hashing, packed while the node has fewer executions in flight than its
//!   cores, then bounded at `balance` × the mean, warm nodes first;
//! - `hash`: plain consistent hashing, always the home node (OpenWhisk's home invoker);
//! - `random`: a node at random for each invocation.
//!
//! "Warm" for placement is a hint, as the gateway's is: the function ran on that node
//! within the last minute (the default keep-alive's floor). The cold starts themselves come
//! from the live model of each (function, node) pool, under the given keep-alive policy.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::live::{self, Arrival, LiveOutcome, LiveParams};
use super::trace::{Invocations, Memory, TraceError};
use super::{Options, DEFAULT_MEMORY_MB};
use crate::cluster::placement::{self, Candidate, Ring};

/// How recently a function must have run on a node for placement to call it warm there.
const WARM_HINT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    Surge,
    Hash,
    Random,
}

impl Placement {
    pub const ALL: [Placement; 3] = [Placement::Surge, Placement::Hash, Placement::Random];

    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Surge => "surge",
            Placement::Hash => "hash",
            Placement::Random => "random",
        }
    }
}

/// The cluster the trace is placed on.
#[derive(Clone, Copy, Debug)]
pub struct ClusterParams {
    pub nodes: usize,
    /// Each node's cores: what `surge` packs before it spreads.
    pub cores: u64,
    /// `[cluster] balance`.
    pub balance: f64,
}

/// One placement over the whole trace.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ClusterReport {
    pub placement: Placement,
    pub policy: String,
    pub nodes: usize,
    pub functions: u64,
    pub invocations: u64,
    pub cold_starts: u64,
    pub cold_share: f64,
    /// (function, node) pools that ever started an instance.
    pub pools: u64,
    pub instance_starts: u64,
    pub added_latency_p99_ms: f64,
    pub wasted_gb_s: f64,
    /// The busiest node's share of all executions (1/N is even).
    pub busiest_node_share: f64,
    /// At each arrival with anything in flight: the busiest node's executions in flight ÷
    /// the mean over nodes; its 99th percentile (1 is even, N is all on one node).
    pub imbalance_p99: f64,
    /// The most executions in flight on one node at once.
    pub peak_node_in_flight: u64,
}

struct Function {
    name: String,
    memory_mb: f64,
    arrivals: Vec<Arrival>,
}

/// Replay the trace on `c` under every placement, with `predictive` (or else the first of
/// `opts.policies`) as every pool's keep-alive policy.
pub fn run(
    opts: &Options,
    p: &LiveParams,
    c: ClusterParams,
) -> Result<Vec<ClusterReport>, TraceError> {
    let memory = opts.memory.as_deref().map(Memory::read).transpose()?;
    let durations = super::durations(opts, "cluster")?;
    let fallback_ms = durations.median_p50();
    let invocations = Invocations::open(&opts.invocations)?;
    let minutes = invocations.minutes();
    let mut functions = Vec::new();
    // The same arrivals as `--model live` (the same seeds per function).
    for (i, f) in invocations
        .take(opts.functions.unwrap_or(usize::MAX))
        .enumerate()
    {
        let f = f?;
        if f.per_minute.iter().all(|&n| n == 0) {
            continue;
        }
        let pct = durations
            .of(&f)
            .map_or_else(|| vec![(50.0, fallback_ms)], <[_]>::to_vec);
        let mut rng = StdRng::seed_from_u64(p.seed ^ ((i as u64 + 1) << 20));
        functions.push(Function {
            memory_mb: memory.as_ref().map_or(DEFAULT_MEMORY_MB, |m| m.of(&f)),
            arrivals: live::arrivals(&f.per_minute, &pct, &mut rng),
            name: f.function,
        });
        opts.progress.tick();
    }
    // The live default (predictive) when it is among the policies, else the first.
    use crate::control::keepalive::PolicySpec;
    let spec = opts
        .policies
        .iter()
        .find(|p| matches!(p, PolicySpec::Predictive(_)))
        .or(opts.policies.first())
        .cloned()
        .unwrap_or(PolicySpec::Predictive(None));
    Ok(Placement::ALL
        .iter()
        .map(|&pl| {
            let (per_pool, load) = place(&functions, pl, c, p.seed);
            let mut out = LiveOutcome::default();
            let mut gb_s = 0.0;
            let mut pools = 0;
            for (f, nodes) in functions.iter().zip(&per_pool) {
                for arrivals in nodes.iter().filter(|a| !a.is_empty()) {
                    let o = live::simulate(arrivals, minutes, f.memory_mb, &spec, p);
                    out.invocations += o.invocations;
                    out.cold_starts += o.cold_starts;
                    out.starts += o.starts;
                    out.waits.merge(&o.waits);
                    gb_s += o.idle_instance_s * f.memory_mb / 1024.0;
                    pools += u64::from(o.starts > 0);
                }
            }
            ClusterReport {
                placement: pl,
                policy: spec.to_string(),
                nodes: c.nodes,
                functions: functions.len() as u64,
                invocations: out.invocations,
                cold_starts: out.cold_starts,
                cold_share: out.cold_starts as f64 / out.invocations.max(1) as f64,
                pools,
                instance_starts: out.starts,
                added_latency_p99_ms: out.waits.percentile_ms(99.0),
                wasted_gb_s: gb_s,
                busiest_node_share: load.busiest_share,
                imbalance_p99: load.imbalance_p99,
                peak_node_in_flight: load.peak,
            }
        })
        .collect())
}

struct Load {
    busiest_share: f64,
    imbalance_p99: f64,
    peak: u64,
}

/// Each function's arrivals split by node under `pl`, and how the nodes were loaded.
fn place(
    functions: &[Function],
    pl: Placement,
    c: ClusterParams,
    seed: u64,
) -> (Vec<Vec<Vec<Arrival>>>, Load) {
    let names: Vec<String> = (0..c.nodes).map(|i| format!("n{i}")).collect();
    let ring = Ring::new(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let walks: Vec<Vec<usize>> = functions.iter().map(|f| ring.walk(&f.name)).collect();
    // Every arrival of the trace, in time order: (at, runs for, function).
    let mut all: Vec<(Duration, Duration, usize)> = functions
        .iter()
        .enumerate()
        .flat_map(|(i, f)| f.arrivals.iter().map(move |&(at, run)| (at, run, i)))
        .collect();
    all.sort_by_key(|a| (a.0, a.2));
    let mut rng = StdRng::seed_from_u64(seed ^ 0x9e37_79b9);
    let mut ends: Vec<BinaryHeap<Reverse<Duration>>> = vec![BinaryHeap::new(); c.nodes];
    // Each function's own executions in flight on each node.
    let mut own: Vec<Vec<BinaryHeap<Reverse<Duration>>>> =
        vec![vec![BinaryHeap::new(); c.nodes]; functions.len()];
    // When each function last ran (or runs until) on each node.
    let mut last = vec![vec![None::<Duration>; c.nodes]; functions.len()];
    let mut out: Vec<Vec<Vec<Arrival>>> = vec![vec![Vec::new(); c.nodes]; functions.len()];
    let mut executions = vec![0u64; c.nodes];
    let mut ratios = Vec::with_capacity(all.len());
    let mut peak = 0u64;
    let mut cands = vec![Candidate::default(); c.nodes];
    for (at, run, f) in all {
        for (n, e) in ends.iter_mut().enumerate() {
            while e.peek().is_some_and(|r| r.0 <= at) {
                e.pop();
            }
            let mine = &mut own[f][n];
            while mine.peek().is_some_and(|r| r.0 <= at) {
                mine.pop();
            }
            cands[n] = Candidate {
                load: e.len() as u64,
                own: mine.len() as u64,
                pack: c.cores,
                warm: last[f][n].is_some_and(|t| t + WARM_HINT >= at),
                full: false,
                down: false,
            };
        }
        let node = match pl {
            Placement::Surge => placement::choose(&walks[f], &cands, c.balance)[0],
            Placement::Hash => walks[f][0],
            Placement::Random => rng.gen_range(0..c.nodes),
        };
        ends[node].push(Reverse(at + run));
        own[f][node].push(Reverse(at + run));
        last[f][node] = Some(last[f][node].map_or(at + run, |t| t.max(at + run)));
        out[f][node].push((at, run));
        executions[node] += 1;
        let loads: Vec<u64> = ends.iter().map(|e| e.len() as u64).collect();
        let total: u64 = loads.iter().sum();
        let max = loads.iter().copied().max().unwrap_or(0);
        peak = peak.max(max);
        ratios.push(max as f64 / (total as f64 / c.nodes as f64));
    }
    ratios.sort_by(f64::total_cmp);
    let all_executions: u64 = executions.iter().sum();
    let load = Load {
        busiest_share: executions.iter().copied().max().unwrap_or(0) as f64
            / all_executions.max(1) as f64,
        imbalance_p99: super::trace::percentile(&ratios, 99.0),
        peak,
    };
    (out, load)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steady(name: &str, every_ms: u64, run_ms: u64, n: u64) -> Function {
        Function {
            name: name.into(),
            memory_mb: 128.0,
            arrivals: (0..n)
                .map(|i| {
                    (
                        Duration::from_millis(i * every_ms),
                        Duration::from_millis(run_ms),
                    )
                })
                .collect(),
        }
    }

    const C: ClusterParams = ClusterParams {
        nodes: 3,
        cores: 2,
        balance: 1.25,
    };

    #[test]
    fn a_light_function_stays_on_its_home_node_unless_placed_at_random() {
        let fs = vec![steady("light", 1000, 10, 300)];
        let on = |pl| {
            place(&fs, pl, C, 1).0[0]
                .iter()
                .filter(|a| !a.is_empty())
                .count()
        };
        assert_eq!(on(Placement::Surge), 1);
        assert_eq!(on(Placement::Hash), 1);
        assert_eq!(on(Placement::Random), 3);
    }

    #[test]
    fn a_heavy_function_spreads_under_surge_and_piles_up_under_hashing() {
        // 10 executions in flight at once on average: far past one node's 2 cores.
        let fs = vec![steady("heavy", 10, 100, 6000)];
        let (_, surge) = place(&fs, Placement::Surge, C, 1);
        let (_, hash) = place(&fs, Placement::Hash, C, 1);
        assert_eq!(hash.busiest_share, 1.0);
        // Split between its home and the next node (warm first; the third only when
        // both are at their bound).
        assert!(surge.busiest_share <= 0.55, "{}", surge.busiest_share);
        assert!(surge.imbalance_p99 < hash.imbalance_p99);
    }
}
