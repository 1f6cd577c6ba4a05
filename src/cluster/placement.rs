//! Which node serves a function's request: pure, so that the replay (`replay/cluster.rs`)
//! runs it exactly as the gateway does.
//!
//! - **Home by consistent hashing** (OpenWhisk's home invoker): a function's nodes in ring
//!   order, the same on every node, so its requests meet on the same warm instances and a
//!   membership change moves only the functions of the node that came or went.
//! - **Warm first** (Palette, EuroSys'23, locality hints): a node with ready instances of
//!   the function wins over a colder one before it on the ring.
//! - **Pack, then bound** (Hermod, SoCC'22: pack at low load, spread at high load): a node
//!   takes requests while it has fewer in flight than its cores, however uneven that
//!   leaves the cluster; past that, no node takes more than `balance` × the mean
//!   (consistent hashing with bounded loads, Mirrokni, Thorup and Zadimoghaddam).
//! - **Light functions stay**: a function with none of its own requests in flight at its
//!   warm node or home keeps going there until that node is past twice its bound. Moving
//!   it would buy a cold start to take one request off; the busy functions (requests in
//!   flight) are the ones that spread. On the Azure sample this is what makes placement
//!   beat plain hashing on cold starts as well as on balance (BENCHMARKS.md, "Cluster").
//!
//! - **Fit the node's memory** (the node allocator's part): a node whose free memory
//!   cannot hold one more instance of the function is over its bound, unless it has warm
//!   instances none of this router's requests are using; it is tried after every node
//!   that can fit one, so a scale-up goes where it fits. A node that gets a request it
//!   cannot fit after all (its free memory changed since it last said) sheds it to the
//!   next node (`gateway/forward.rs`).
//!
//! Loads are what this router itself has in flight at each node (and, for itself, all it
//! serves): no request waits for a view of the others' loads.

/// Virtual points per node on the ring: enough that three nodes split keys within a few
/// percent of a third each.
const VNODES: u32 = 64;

/// The ring over the current members, built when membership changes.
#[derive(Clone, Debug, Default)]
pub struct Ring {
    /// (point, node index), sorted by point.
    points: Vec<(u64, usize)>,
    nodes: usize,
}

impl Ring {
    pub fn new(nodes: &[&str]) -> Ring {
        let mut points: Vec<(u64, usize)> = nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| (0..VNODES).map(move |v| (hash(&format!("{n}#{v}")), i)))
            .collect();
        points.sort_unstable();
        Ring {
            points,
            nodes: nodes.len(),
        }
    }

    /// Every node once, in ring order from `key`'s point: the first is its home.
    pub fn walk(&self, key: &str) -> Vec<usize> {
        if self.points.is_empty() {
            return Vec::new();
        }
        let h = hash(key);
        let start = self.points.partition_point(|(p, _)| *p < h);
        let mut seen = vec![false; self.nodes];
        let mut out = Vec::with_capacity(self.nodes);
        for i in 0..self.points.len() {
            let (_, n) = self.points[(start + i) % self.points.len()];
            if !seen[n] {
                seen[n] = true;
                out.push(n);
                if out.len() == self.nodes {
                    break;
                }
            }
        }
        out
    }
}

/// One node, as this router sees it when placing a request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Candidate {
    /// Requests in flight there (from this router; for itself, all it serves).
    pub load: u64,
    /// What it takes before spreading begins: its cores.
    pub pack: u64,
    /// Of `load`, the function's own requests.
    pub own: u64,
    /// It has ready instances of the function.
    pub warm: bool,
    /// Its free memory cannot hold one more instance of the function.
    pub full: bool,
    /// This router could not reach it lately: tried last.
    pub down: bool,
}

/// The nodes to try, best first: `walk` (ring order) reordered by load and warmth.
/// `nodes[i]` describes node i.
pub fn choose(walk: &[usize], nodes: &[Candidate], balance: f64) -> Vec<usize> {
    let up: Vec<usize> = walk.iter().copied().filter(|&i| !nodes[i].down).collect();
    if up.is_empty() {
        return walk.to_vec();
    }
    let total: u64 = up.iter().map(|&i| nodes[i].load).sum();
    // Mirrokni et al.'s capacity: ceil(c · (m + 1) / n) for the (m + 1)-th request.
    let bounded = (balance * (total + 1) as f64 / up.len() as f64).ceil() as u64;
    let cap = |i: usize| bounded.max(nodes[i].pack);
    // A node that cannot grow the function's pool takes a request only where it has warm
    // instances this router is not using (none of the function's requests in flight).
    let takes = |i: usize| !nodes[i].full || (nodes[i].warm && nodes[i].own == 0);
    let under = |i: usize| takes(i) && nodes[i].load < cap(i);
    // A light function (none of its requests in flight there) stays at its home, or where
    // it is warm, until that node is past twice its bound: moving it would cost a cold
    // start (its home pool is the one the keep-alive policy pre-warms) to take one request
    // off; the functions with requests in flight are the ones to spread.
    let light = |i: usize| takes(i) && nodes[i].own == 0 && nodes[i].load < 2 * cap(i);
    let home = walk.first().copied();
    let first = up
        .iter()
        .copied()
        .find(|&i| nodes[i].warm && (under(i) || light(i)))
        .or_else(|| home.filter(|&h| !nodes[h].down && (under(h) || light(h))))
        .or_else(|| up.iter().copied().find(|&i| under(i)))
        .unwrap_or_else(|| {
            // Everyone is over: the least loaded for its size, among those that can fit
            // the function if any can.
            let fits: Vec<usize> = up.iter().copied().filter(|&i| takes(i)).collect();
            let pool = if fits.is_empty() { &up } else { &fits };
            *pool
                .iter()
                .min_by(|&&a, &&b| {
                    let ra = nodes[a].load as f64 / nodes[a].pack.max(1) as f64;
                    let rb = nodes[b].load as f64 / nodes[b].pack.max(1) as f64;
                    ra.total_cmp(&rb)
                })
                .expect("up is not empty")
        });
    // Then the nodes that can fit it, then those that cannot, then those down.
    let mut order = vec![first];
    order.extend(up.iter().copied().filter(|&i| i != first && takes(i)));
    order.extend(up.iter().copied().filter(|&i| i != first && !takes(i)));
    order.extend(walk.iter().copied().filter(|&i| nodes[i].down));
    order
}

/// FNV-1a over the bytes, then splitmix64's finalizer: the same on every node and every
/// build (the ring must agree across the cluster), and well spread for short keys.
pub fn hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(n: usize, pack: u64) -> Vec<Candidate> {
        vec![
            Candidate {
                pack,
                ..Default::default()
            };
            n
        ]
    }

    #[test]
    fn homes_spread_evenly_and_move_little_when_a_node_goes() {
        let three = Ring::new(&["a", "b", "c"]);
        let mut counts = [0u32; 3];
        for f in 0..3000 {
            counts[three.walk(&format!("fn-{f}"))[0]] += 1;
        }
        for c in counts {
            assert!((700..1300).contains(&c), "uneven homes: {counts:?}");
        }
        // Without c, only c's functions move: a's and b's keep their home.
        let two = Ring::new(&["a", "b"]);
        for f in 0..3000 {
            let key = format!("fn-{f}");
            let before = three.walk(&key);
            if before[0] != 2 {
                assert_eq!(two.walk(&key)[0], before[0], "{key} moved");
            } else {
                assert_eq!(two.walk(&key)[0], before[1], "{key} skipped its next node");
            }
        }
    }

    #[test]
    fn packs_on_the_home_node_until_its_cores_are_busy_then_bounds() {
        // The function's own requests are the load: it is the one to spread.
        let walk = [1, 2, 0];
        let mut nodes = idle(3, 2);
        for n in &mut nodes {
            n.own = 1;
        }
        assert_eq!(choose(&walk, &nodes, 1.25)[0], 1, "idle: home");
        nodes[1].load = 1;
        assert_eq!(choose(&walk, &nodes, 1.25)[0], 1, "below its cores: packed");
        nodes[1].load = 2;
        // total 2, bound ceil(1.25·3/3) = 2: home is at it, the next on the ring takes it.
        assert_eq!(choose(&walk, &nodes, 1.25)[0], 2);
        // Home and next at 3 of total 6: bound ceil(1.25·7/3) = 3, the third node takes it.
        nodes[1].load = 3;
        nodes[2].load = 3;
        assert_eq!(choose(&walk, &nodes, 1.25)[0], 0);
        nodes[2].load = 2;
        // Everyone over their cores: load is kept within balance × the mean.
        nodes[0].load = 2;
        nodes[1].load = 4;
        // total 8, bound ceil(1.25·9/3) = 4: node 1 is at it, node 2 (2) is not.
        assert_eq!(choose(&walk, &nodes, 1.25)[0], 2);
    }

    #[test]
    fn a_light_function_stays_home_until_its_home_is_twice_over() {
        let walk = [1, 2, 0];
        let mut nodes = idle(3, 2);
        // Home is over its bound (ceil(1.25·4/3) = 2) with others' requests: a light
        // function stays.
        nodes[1].load = 3;
        assert_eq!(choose(&walk, &nodes, 1.25)[0], 1);
        // Past twice its bound (ceil(1.25·13/3) = 6), it moves on.
        nodes[1].load = 12;
        assert_eq!(choose(&walk, &nodes, 1.25)[0], 2);
        // One of its own requests in flight there: it is a busy function, and spreads.
        nodes[1].load = 3;
        nodes[1].own = 1;
        assert_eq!(choose(&walk, &nodes, 1.25)[0], 2);
    }

    #[test]
    fn a_node_that_cannot_fit_the_function_goes_after_those_that_can() {
        let walk = [1, 2, 0];
        let mut nodes = idle(3, 2);
        // Home's memory cannot hold an instance: a cold start goes to the next node that
        // can, and home is tried last.
        nodes[1].full = true;
        assert_eq!(choose(&walk, &nodes, 1.25), vec![2, 0, 1]);
        // Warm at home with none of this router's requests on it: it takes the request.
        nodes[1].warm = true;
        assert_eq!(choose(&walk, &nodes, 1.25), vec![1, 2, 0]);
        // Its instances busy with the function's requests, and no room for more: spread,
        // even though home is under its bound.
        nodes[1].own = 1;
        nodes[1].load = 1;
        assert_eq!(choose(&walk, &nodes, 1.25)[0], 2);
        // Everyone over their bound: the least loaded that can fit it, not the idlest.
        // (Total 18, bound ceil(1.25·19/3) = 8.)
        nodes[0].load = 9;
        nodes[2].load = 8;
        assert_eq!(choose(&walk, &nodes, 1.25), vec![2, 0, 1]);
        // No node can fit it: the order is by load, and every node is still tried.
        for n in &mut nodes {
            n.full = true;
            n.warm = false;
        }
        let order = choose(&walk, &nodes, 1.25);
        assert_eq!(order[0], 1);
        assert_eq!(order.len(), 3);
    }

    #[test]
    fn warm_nodes_win_and_down_nodes_go_last() {
        let walk = [0, 1, 2];
        let mut nodes = idle(3, 1);
        nodes[1].warm = true;
        assert_eq!(choose(&walk, &nodes, 1.25), vec![1, 0, 2]);
        nodes[1].down = true;
        assert_eq!(choose(&walk, &nodes, 1.25), vec![0, 2, 1]);
        for n in &mut nodes {
            n.down = true;
        }
        assert_eq!(choose(&walk, &nodes, 1.25), vec![0, 1, 2]);
    }
}
