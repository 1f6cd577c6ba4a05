//! Node allocator: divides one node resource (CPU millicores or memory bytes)
//! among functions when their demands exceed the node's capacity.
//!
//! Pure and std-only so that the policy can be tested exhaustively apart from
//! the code that measures and enforces it.
//!
//! Rules, in order:
//! 1. Floors first. Every claim gets its `floor` when the floors fit; when they
//!    do not (possible for CPU, never expected for memory) the floors are
//!    themselves divided by rule 2 with `demand = floor`.
//! 2. The rest goes to the excess (`demand - floor`) tier by tier, highest
//!    priority first. A tier whose excess fits is served wholly; otherwise its
//!    remaining capacity is split by weighted max-min fairness (water-filling:
//!    each claim gets `min(excess, λ·weight)` with `λ` chosen so the shares sum
//!    to what is left) and lower tiers get nothing beyond their floors.
//!
//! Invariants of [`allocate`] (checked by the property test against an
//! independent LP reference):
//! - `Σ allocated ≤ capacity`, and it is work-conserving:
//!   `Σ allocated == min(capacity, Σ max(demand, floor))`.
//! - `allocated_i ≤ max(demand_i, floor_i)`.
//! - `allocated_i ≥ floor_i` whenever `Σ floor ≤ capacity`.
//! - Within a contested tier every claim short of its demand is within one
//!   unit of the common water level `λ·weight` (integer rounding only).
//! - A lower tier gets more than its floor only if every higher tier got its
//!   full demand.
//!
//! Arithmetic is exact in `u64`/`u128` (no floats, no iteration to
//! convergence): O(n log n) per tier.

/// One function's claim on a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// What it must keep (memory it already holds and cannot give back without killing it).
    pub floor: u64,
    /// What it asks for in all (treated as at least `floor`).
    pub demand: u64,
    /// Share of contested capacity within its priority, relative to the others (0 is treated as 1).
    pub weight: u32,
    /// Higher priorities are served first, wholly, before lower ones get anything above their floors.
    pub priority: u8,
}

/// Allocate `capacity` among `claims` (result in the same order).
pub fn allocate(capacity: u64, claims: &[Claim]) -> Vec<u64> {
    let floors: u128 = claims.iter().map(|c| u128::from(c.floor)).sum();
    if floors > u128::from(capacity) {
        // Floors do not fit: divide the floors themselves, nothing above them.
        let mut alloc = vec![0; claims.len()];
        let excess: Vec<u64> = claims.iter().map(|c| c.floor).collect();
        fill_tiers(u128::from(capacity), claims, &excess, &mut alloc);
        return alloc;
    }
    let mut alloc: Vec<u64> = claims.iter().map(|c| c.floor).collect();
    let excess: Vec<u64> = claims
        .iter()
        .map(|c| c.demand.saturating_sub(c.floor))
        .collect();
    fill_tiers(u128::from(capacity) - floors, claims, &excess, &mut alloc);
    alloc
}

/// Adds to `alloc[i]` up to `excess[i]` from `remaining`, highest priority
/// tier first; the first tier that does not fit is water-filled and ends it.
fn fill_tiers(mut remaining: u128, claims: &[Claim], excess: &[u64], alloc: &mut [u64]) {
    let mut order: Vec<usize> = (0..claims.len()).collect();
    // Stable, so indices stay ascending within a tier (deterministic ties).
    order.sort_by_key(|&i| std::cmp::Reverse(claims[i].priority));
    for tier in order.chunk_by(|&a, &b| claims[a].priority == claims[b].priority) {
        if remaining == 0 {
            break;
        }
        let total: u128 = tier.iter().map(|&i| u128::from(excess[i])).sum();
        if total <= remaining {
            for &i in tier {
                alloc[i] += excess[i];
            }
            remaining -= total;
        } else {
            water_fill(remaining, tier, claims, excess, alloc);
            break;
        }
    }
}

fn weight(c: &Claim) -> u128 {
    u128::from(c.weight.max(1))
}

/// Splits `remaining` (< Σ excess of `tier`, so the tier is contested) by
/// weighted max-min fairness, exactly, with largest-remainder rounding.
fn water_fill(
    remaining: u128,
    tier: &[usize],
    claims: &[Claim],
    excess: &[u64],
    alloc: &mut [u64],
) {
    // Ascending excess/weight: claims below the level saturate first.
    // Cross-multiplied in u128 (< 2^96), so the order is exact.
    let mut sorted = tier.to_vec();
    sorted.sort_by(|&a, &b| {
        (u128::from(excess[a]) * weight(&claims[b]))
            .cmp(&(u128::from(excess[b]) * weight(&claims[a])))
            .then(a.cmp(&b))
    });

    // λ = left / w_rest. A claim saturates iff excess/w ≤ λ; saturating one
    // below the level can only raise it, so one pass in sorted order suffices.
    // `left` never underflows: excess ≤ λ·w ≤ left because w ≤ w_rest.
    let mut left = remaining;
    let mut w_rest: u128 = tier.iter().map(|&i| weight(&claims[i])).sum();
    let mut first_open = sorted.len();
    for (k, &i) in sorted.iter().enumerate() {
        let e = u128::from(excess[i]);
        let w = weight(&claims[i]);
        // e·w_rest < 2^64·2^46 for 10^4 claims of weight < 2^32: fits.
        if e * w_rest <= left * w {
            alloc[i] += excess[i];
            left -= e;
            w_rest -= w;
        } else {
            first_open = k;
            break;
        }
    }
    // Since remaining < Σ excess, at least one claim stays open, so w_rest > 0.
    let open = &sorted[first_open..];

    // Each open claim gets ⌊left·w/w_rest⌋ (< excess, as excess/w > λ), so the
    // one extra unit handed out below never overshoots its demand.
    let mut remainders = Vec::with_capacity(open.len());
    let mut given: u128 = 0;
    for &i in open {
        let num = left * weight(&claims[i]);
        let share = num / w_rest;
        given += share;
        // share < excess[i] ≤ u64::MAX, so the cast is lossless.
        alloc[i] += share as u64;
        remainders.push((num % w_rest, i));
    }
    // Σ remainders = leftover·w_rest with each < w_rest: leftover < open.len().
    let leftover = (left - given) as usize;
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in &remainders[..leftover] {
        alloc[i] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(floor: u64, demand: u64, weight: u32, priority: u8) -> Claim {
        Claim {
            floor,
            demand,
            weight,
            priority,
        }
    }

    #[test]
    fn feasible_meets_every_demand() {
        let claims = [
            claim(10, 100, 1, 0),
            claim(0, 250, 3, 1),
            claim(50, 50, 2, 0),
        ];
        assert_eq!(allocate(1000, &claims), vec![100, 250, 50]);
        assert_eq!(allocate(400, &claims), vec![100, 250, 50]);
    }

    #[test]
    fn infeasible_divides_by_weight() {
        let claims = [
            claim(0, 1000, 1, 0),
            claim(0, 1000, 2, 0),
            claim(0, 1000, 3, 0),
        ];
        assert_eq!(allocate(900, &claims), vec![150, 300, 450]);
    }

    #[test]
    fn small_claim_satisfied_rest_redistributed() {
        // Fair level would be 300 each; the first needs only 100, so the other
        // two split the remaining 800.
        let claims = [
            claim(0, 100, 1, 0),
            claim(0, 1000, 1, 0),
            claim(0, 1000, 1, 0),
        ];
        assert_eq!(allocate(900, &claims), vec![100, 400, 400]);
        // Weighted: level 100/unit weight; the weight-3 claim needs only 60.
        let claims = [
            claim(0, 60, 3, 0),
            claim(0, 1000, 1, 0),
            claim(0, 1000, 2, 0),
        ];
        assert_eq!(allocate(360, &claims), vec![60, 100, 200]);
    }

    #[test]
    fn leftover_units_go_by_largest_remainder_then_index() {
        let claims = [claim(0, 10, 1, 0), claim(0, 10, 1, 0), claim(0, 10, 1, 0)];
        assert_eq!(allocate(10, &claims), vec![4, 3, 3]);
        assert_eq!(allocate(11, &claims), vec![4, 4, 3]);
        // Shares 7·1/3 = 2.33 and 7·2/3 = 4.67: the larger remainder wins.
        let claims = [claim(0, 10, 1, 0), claim(0, 10, 2, 0)];
        assert_eq!(allocate(7, &claims), vec![2, 5]);
    }

    #[test]
    fn high_tier_served_wholly_before_lower_tier() {
        let claims = [
            claim(10, 500, 100, 0),
            claim(0, 300, 1, 2),
            claim(0, 400, 1, 1),
        ];
        // Tier 2 fits wholly (300), tier 1 gets the remaining 190 of its 400,
        // tier 0 keeps only its floor.
        assert_eq!(allocate(500, &claims), vec![10, 300, 190]);
        // Enough for tiers 2 and 1: tier 0 gets the rest.
        assert_eq!(allocate(800, &claims), vec![100, 300, 400]);
    }

    #[test]
    fn floors_kept_when_rest_contested() {
        let claims = [
            claim(400, 1000, 1, 1),
            claim(100, 1000, 1, 1),
            claim(300, 1000, 1, 0),
        ];
        // Floors 800, rest 200 split evenly in tier 1; tier 0 keeps its floor.
        assert_eq!(allocate(1000, &claims), vec![500, 200, 300]);
    }

    #[test]
    fn floors_above_capacity_divided_by_priority_and_weight() {
        let claims = [
            claim(300, 1000, 1, 0),
            claim(500, 500, 1, 1),
            claim(500, 600, 4, 1),
        ];
        // Floors 1300 > 700: tier 1 floors (1000) contested, split 1:4 → 140,
        // 560, capped at floor 500 → 200, 500. Tier 0 gets nothing.
        assert_eq!(allocate(700, &claims), vec![0, 200, 500]);
        // Tier 1 floors fit, tier 0 gets the rest of its floor, no more.
        assert_eq!(allocate(1200, &claims), vec![200, 500, 500]);
    }

    #[test]
    fn edge_cases() {
        assert_eq!(allocate(1000, &[]), Vec::<u64>::new());
        assert_eq!(allocate(0, &[]), Vec::<u64>::new());
        let claims = [claim(0, 10, 1, 0), claim(0, 10, 1, 1)];
        assert_eq!(allocate(0, &claims), vec![0, 0]);
        // Zero weight is weight 1.
        let claims = [claim(0, 1000, 0, 0), claim(0, 1000, 1, 0)];
        assert_eq!(allocate(100, &claims), vec![50, 50]);
        // Demand below floor is the floor.
        let claims = [claim(70, 10, 1, 0), claim(0, 1000, 1, 0)];
        assert_eq!(allocate(100, &claims), vec![70, 30]);
        assert_eq!(allocate(1000, &claims), vec![70, 930]);
        // Zero demand gets nothing even with capacity to spare.
        assert_eq!(allocate(5, &[claim(0, 0, 1, 0)]), vec![0]);
    }

    #[test]
    fn huge_values_and_many_claims() {
        let cap = u64::MAX / 2;
        let claims = [
            claim(0, u64::MAX, u32::MAX, 0),
            claim(0, u64::MAX, 1, 0),
            claim(u64::MAX / 4, u64::MAX, 0, 0),
        ];
        let a = allocate(cap, &claims);
        assert_eq!(
            a.iter().map(|&x| u128::from(x)).sum::<u128>(),
            u128::from(cap)
        );
        assert!(a[2] >= u64::MAX / 4);

        let claims: Vec<Claim> = (0..10_000u64)
            .map(|i| {
                claim(
                    i,
                    u64::MAX - i,
                    (i as u32).wrapping_mul(2_654_435_761),
                    (i % 7) as u8,
                )
            })
            .collect();
        let a = allocate(cap, &claims);
        assert_eq!(
            a.iter().map(|&x| u128::from(x)).sum::<u128>(),
            u128::from(cap)
        );
        assert!(a.iter().zip(&claims).all(|(&x, c)| x >= c.floor));
    }

    /// xorshift64*: deterministic, no crates.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }

        /// Mostly small values (where rounding matters), sometimes huge ones.
        fn amount(&mut self, huge: u64) -> u64 {
            match self.below(6) {
                0 => 0,
                1 => self.below(10),
                2 => self.below(1_000),
                3 => self.below(1_000_000),
                4 => self.below(huge.max(1)),
                _ => huge - self.below(1_000).min(huge),
            }
        }

        fn weight(&mut self) -> u32 {
            match self.below(5) {
                0 => 0,
                1 => 1,
                2 => self.below(10) as u32,
                3 => self.below(1_000) as u32,
                _ => self.next_u64() as u32,
            }
        }
    }

    /// Independent reference for one contested tier: bisection on λ in f64
    /// of "maximize λ s.t. Σ min(excess_i, λ·w_i) ≤ remaining" (the LP).
    fn reference_level(remaining: f64, tier: &[(f64, f64)]) -> f64 {
        let f = |l: f64| tier.iter().map(|&(e, w)| e.min(l * w)).sum::<f64>();
        let mut lo = 0.0f64;
        let mut hi = tier.iter().map(|&(e, w)| e / w).fold(0.0, f64::max);
        loop {
            let mid = lo + (hi - lo) / 2.0;
            if mid <= lo || mid >= hi {
                return lo;
            }
            if f(mid) <= remaining {
                lo = mid;
            } else {
                hi = mid;
            }
        }
    }

    /// Checks `alloc` against the invariants, the LP reference and the
    /// max-min optimality conditions. Returns (floors over capacity, a tier
    /// was contested) so the sweep can prove it covers both regimes.
    fn check(capacity: u64, claims: &[Claim], alloc: &[u64]) -> (bool, bool) {
        let ctx = || format!("capacity {capacity} claims {claims:?} alloc {alloc:?}");
        assert_eq!(alloc.len(), claims.len(), "{}", ctx());
        let cap = u128::from(capacity);
        let sum: u128 = alloc.iter().map(|&a| u128::from(a)).sum();
        let floors: u128 = claims.iter().map(|c| u128::from(c.floor)).sum();
        let wants: u128 = claims
            .iter()
            .map(|c| u128::from(c.demand.max(c.floor)))
            .sum();
        assert!(sum <= cap, "over capacity: {}", ctx());
        assert_eq!(sum, cap.min(wants), "not work-conserving: {}", ctx());
        for (c, &a) in claims.iter().zip(alloc) {
            assert!(a <= c.demand.max(c.floor), "over demand: {}", ctx());
            if floors <= cap {
                assert!(a >= c.floor, "floor broken: {}", ctx());
            }
        }

        // The problem the allocator solves above `base`: `target` per claim.
        let over = floors > cap;
        let base = |c: &Claim| if over { 0 } else { c.floor };
        let target = |c: &Claim| if over { c.floor } else { c.demand.max(c.floor) };
        let mut remaining = if over { cap } else { cap - floors };
        let mut contested = false;

        let mut prios: Vec<u8> = claims.iter().map(|c| c.priority).collect();
        prios.sort_unstable_by(|a, b| b.cmp(a));
        prios.dedup();
        for p in prios {
            let tier: Vec<usize> = (0..claims.len())
                .filter(|&i| claims[i].priority == p)
                .collect();
            let ex = |i: usize| target(&claims[i]) - base(&claims[i]);
            let got = |i: usize| alloc[i] - base(&claims[i]);
            let w = |i: usize| u128::from(claims[i].weight.max(1));
            let total: u128 = tier.iter().map(|&i| u128::from(ex(i))).sum();
            if total <= remaining {
                for &i in &tier {
                    assert_eq!(got(i), ex(i), "fitting tier not served: {}", ctx());
                }
                remaining -= total;
                continue;
            }
            // Contested tier: LP reference within 1 unit plus f64 resolution
            // (relative to the tier's capacity, the reference's own scale).
            let params: Vec<(f64, f64)> =
                tier.iter().map(|&i| (ex(i) as f64, w(i) as f64)).collect();
            let lambda = reference_level(remaining as f64, &params);
            let tol = 1.0 + 1e-9 * remaining as f64;
            for (&i, &(e, wf)) in tier.iter().zip(&params) {
                let expect = e.min(lambda * wf);
                let diff = (got(i) as f64 - expect).abs();
                assert!(
                    diff <= tol,
                    "claim {i}: expected {expect}, diff {diff}: {}",
                    ctx()
                );
            }
            // Max-min optimality, exactly: a claim short of its demand is at
            // the top level, up to one unit of rounding on either side:
            // (got_i + 1)/w_i ≥ (got_j − 1)/w_j.
            for &i in &tier {
                if got(i) == ex(i) {
                    continue;
                }
                for &j in &tier {
                    let lhs = (u128::from(got(i)) + 1) * w(j) + w(i);
                    let rhs = u128::from(got(j)) * w(i);
                    assert!(lhs >= rhs, "not max-min fair ({i} vs {j}): {}", ctx());
                }
            }
            remaining = 0;
            contested = true;
        }

        // Strict priority: a lower claim above its base means every higher
        // claim got its full target.
        for (j, cj) in claims.iter().enumerate() {
            if alloc[j] > base(cj) {
                for (i, ci) in claims.iter().enumerate() {
                    if ci.priority > cj.priority {
                        assert_eq!(alloc[i], target(ci), "priority broken: {}", ctx());
                    }
                }
            }
        }
        (over, contested)
    }

    #[test]
    fn property_matches_lp_reference() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut over, mut contested, mut multi_tier) = (0, 0, 0);
        for case in 0..30_000 {
            let n = rng.below(12) as usize;
            // Scale varies per case so that sums of huge values are exercised
            // as well as small ones where rounding dominates.
            let huge = match case % 3 {
                0 => 1_000,
                1 => u64::MAX / 2,
                _ => u64::MAX,
            };
            let capacity = rng.amount(u64::MAX / 2).min(u64::MAX / 2);
            let claims: Vec<Claim> = (0..n)
                .map(|_| {
                    let floor = if rng.below(3) == 0 {
                        0
                    } else {
                        rng.amount(huge) / n as u64
                    };
                    Claim {
                        floor,
                        demand: rng.amount(huge),
                        weight: rng.weight(),
                        priority: if rng.below(8) == 0 {
                            255
                        } else {
                            rng.below(3) as u8
                        },
                    }
                })
                .collect();
            let alloc = allocate(capacity, &claims);
            let (o, c) = check(capacity, &claims, &alloc);
            over += usize::from(o);
            contested += usize::from(c && !o);
            multi_tier += usize::from(c && claims.iter().any(|x| x.priority != claims[0].priority));
        }
        // The sweep must exercise every regime, not just the easy one.
        assert!(
            over > 1_000 && contested > 1_000 && multi_tier > 1_000,
            "{over} {contested} {multi_tier}"
        );
    }
}
