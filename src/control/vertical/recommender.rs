//! The vertical recommender (VPA-class), pure.
//!
//! A deterministic function of (usage history, params, now) → recommended per-instance
//! quota, modelled on the Kubernetes VPA recommender: per-interval memory peaks and CPU
//! usage go into decaying histograms, the target is a percentile of each plus a safety
//! margin, and a band around it (widened while the history is short) decides whether the
//! current quota is left alone. OOMs and sustained CFS throttling override the band.
//! Nothing here reads a clock or does I/O; every call takes `now`.

use std::time::Duration;

use tokio::time::Instant;

use super::quota::{Bounds, Quota};

/// Histogram buckets grow by this ratio (VPA: 1.05): bucket `i` is `first × ratio^i` wide,
/// i.e. 5% of its start plus the first bucket, so a percentile is exact to about that.
const BUCKET_RATIO: f64 = 1.05;
const MEMORY_FIRST_BUCKET_BYTES: f64 = (1u64 << 20) as f64;
const MEMORY_MAX_BYTES: f64 = (1u64 << 40) as f64;
const CPU_FIRST_BUCKET_MILLICORES: f64 = 1.0;
const CPU_MAX_MILLICORES: f64 = 1_000_000.0;
/// Weights may grow to 2^this before the reference time moves forward (VPA's
/// maxDecayExponent): far from f64's limit, so nothing overflows over long runs.
const MAX_DECAY_EXPONENT: f64 = 100.0;
/// After a rescale, bucket weights below this (a sample at the new reference weighs 1)
/// are dropped as empty (VPA's epsilon).
const EPSILON: f64 = 1e-4;
/// A zero half-life is read as this: only the newest samples count.
const MIN_HALF_LIFE_SECS: f64 = 1e-9;

/// Parameters, named as in VPA where VPA has them; every one settable from the host config.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Decay half-life of histogram sample weights. Default 10 min (VPA: 24 h): a function
    /// host sees load shift in minutes, not days.
    pub half_life: Duration,
    /// Target percentile of per-interval memory peaks. Default 0.95.
    pub memory_percentile: f64,
    /// Target percentile of CPU usage. Default 0.90.
    pub cpu_percentile: f64,
    /// Lower bound percentile. Default 0.5.
    pub lower_percentile: f64,
    /// Upper bound percentile. Default 0.95.
    pub upper_percentile: f64,
    /// Fraction added to target and bounds. Default 0.15.
    pub safety_margin: f64,
    /// History span that counts as full confidence (confidence = span / period, not
    /// capped, as in VPA). Default 5 min.
    pub confidence_period: Duration,
    /// After an OOM, memory ≥ used × this. Default 1.2.
    pub oom_bump_ratio: f64,
    /// After an OOM, memory ≥ used + this. Default 16 MiB.
    pub oom_bump_floor_bytes: u64,
    /// Fraction of CFS periods throttled that counts as a throttled sample. Default 0.1.
    pub throttle_threshold: f64,
    /// Consecutive throttled samples before CPU is raised (0 is treated as 1). Default 3.
    pub throttle_sustain: u32,
    /// Multiply the CPU quota by this when sustained-throttled. Default 2.0.
    pub throttle_raise: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            half_life: Duration::from_secs(10 * 60),
            memory_percentile: 0.95,
            cpu_percentile: 0.90,
            lower_percentile: 0.5,
            upper_percentile: 0.95,
            safety_margin: 0.15,
            confidence_period: Duration::from_secs(5 * 60),
            oom_bump_ratio: 1.2,
            oom_bump_floor_bytes: 16 << 20,
            throttle_threshold: 0.1,
            throttle_sustain: 3,
            throttle_raise: 2.0,
        }
    }
}

/// One control-loop sample of one function, already divided per instance by the caller.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Highest wasm linear memory of one instance during the interval; None: nothing ran.
    pub memory_peak_bytes: Option<u64>,
    /// Average CPU per instance over the interval; None: the function had no instance.
    pub cpu_millicores: Option<u64>,
    /// Fraction of the interval's CFS periods that were throttled (0 when there were none).
    pub throttled_fraction: f64,
    /// An out-of-memory event in the interval (an instance refused memory, or a cgroup OOM
    /// kill): the bytes the instance held or asked for when it happened.
    pub oom_bytes: Option<u64>,
}

/// A histogram whose sample weights decay exponentially with age (VPA's
/// `util/decaying_histogram.go`), over exponential buckets: bucket `i` starts at
/// `first × (ratio^i − 1) / (ratio − 1)`, and the last one is open-ended.
#[derive(Clone, Debug)]
struct DecayingHistogram {
    first_bucket: f64,
    weights: Vec<f64>,
    total_weight: f64,
    half_life_secs: f64,
    /// Where a sample weighs 1; set by the first sample, moved forward by rescales.
    reference: Option<Instant>,
}

impl DecayingHistogram {
    fn new(first_bucket: f64, max_value: f64, half_life: Duration) -> Self {
        let ratio = BUCKET_RATIO;
        let buckets = ((max_value * (ratio - 1.0) / first_bucket + 1.0).ln() / ratio.ln()).ceil();
        DecayingHistogram {
            first_bucket,
            weights: vec![0.0; buckets as usize + 1],
            total_weight: 0.0,
            half_life_secs: half_life.as_secs_f64().max(MIN_HALF_LIFE_SECS),
            reference: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.total_weight <= 0.0
    }

    fn bucket_start(&self, i: usize) -> f64 {
        self.first_bucket * (BUCKET_RATIO.powi(i as i32) - 1.0) / (BUCKET_RATIO - 1.0)
    }

    fn bucket_of(&self, value: f64) -> usize {
        let last = self.weights.len() - 1;
        if value < self.first_bucket {
            return 0;
        }
        let scaled = value * (BUCKET_RATIO - 1.0) / self.first_bucket + 1.0;
        let i = ((scaled.ln() / BUCKET_RATIO.ln()).floor() as usize).min(last);
        // The log can land one bucket off right at an edge.
        if i < last && self.bucket_start(i + 1) <= value {
            i + 1
        } else if i > 0 && self.bucket_start(i) > value {
            i - 1
        } else {
            i
        }
    }

    /// log2 of the weight of a sample taken at `now`, relative to the reference.
    fn decay_exponent(&self, reference: Instant, now: Instant) -> f64 {
        let ahead = now.saturating_duration_since(reference).as_secs_f64();
        let behind = reference.saturating_duration_since(now).as_secs_f64();
        (ahead - behind) / self.half_life_secs
    }

    /// The weight of a sample taken at `now`: 2^((now − reference) / half_life). Moves
    /// the reference to `now` (rescaling every weight to match) once that would exceed
    /// 2^MAX_DECAY_EXPONENT, so weights stay finite however long the history runs.
    fn decay_factor(&mut self, now: Instant) -> f64 {
        let reference = *self.reference.get_or_insert(now);
        let exponent = self.decay_exponent(reference, now);
        if exponent <= MAX_DECAY_EXPONENT {
            return exponent.exp2();
        }
        let factor = (-exponent).exp2();
        self.total_weight = 0.0;
        for w in &mut self.weights {
            *w *= factor;
            if *w < EPSILON {
                *w = 0.0;
            }
            self.total_weight += *w;
        }
        self.reference = Some(now);
        1.0
    }

    /// Adds `value` with `weight` times the weight of a plain sample taken at `now`.
    fn add(&mut self, value: f64, weight: f64, now: Instant) {
        let w = weight * self.decay_factor(now);
        let bucket = self.bucket_of(value);
        self.weights[bucket] += w;
        self.total_weight += w;
    }

    /// The total weight, counted in plain samples taken at `now`.
    fn total_samples_at(&self, now: Instant) -> f64 {
        self.reference.map_or(0.0, |reference| {
            self.total_weight / self.decay_exponent(reference, now).exp2()
        })
    }

    /// The upper edge of the first bucket where the cumulative weight reaches
    /// `percentile` × total: conservative, never below the true percentile by more than
    /// float dust. None when empty.
    fn percentile(&self, percentile: f64) -> Option<f64> {
        if self.is_empty() {
            return None;
        }
        let threshold = percentile.clamp(0.0, 1.0) * self.total_weight;
        let mut sum = 0.0;
        let mut found = None;
        for (i, &w) in self.weights.iter().enumerate() {
            if w <= 0.0 {
                continue;
            }
            sum += w;
            found = Some(i);
            if sum >= threshold {
                break;
            }
        }
        // Float dust can leave `sum` just short at percentile 1: then `found` is the last
        // non-empty bucket, which is right.
        let i = found?;
        Some(if i + 1 < self.weights.len() {
            self.bucket_start(i + 1)
        } else {
            self.bucket_start(i)
        })
    }
}

/// Usage history of one function: two decaying histograms plus the OOM / throttling state.
#[derive(Clone, Debug)]
pub struct History {
    memory: DecayingHistogram,
    cpu: DecayingHistogram,
    /// The first sample with any usage in it; idle samples do not count as evidence.
    first_sample: Option<Instant>,
    /// Largest OOM since the last decide, in bytes.
    oom_pending_bytes: Option<u64>,
    throttle_threshold: f64,
    throttled_streak: u32,
}

impl History {
    /// Takes from `p` what recording needs: the half-life and the throttle threshold.
    pub fn new(p: &Params) -> Self {
        History {
            memory: DecayingHistogram::new(
                MEMORY_FIRST_BUCKET_BYTES,
                MEMORY_MAX_BYTES,
                p.half_life,
            ),
            cpu: DecayingHistogram::new(
                CPU_FIRST_BUCKET_MILLICORES,
                CPU_MAX_MILLICORES,
                p.half_life,
            ),
            first_sample: None,
            oom_pending_bytes: None,
            throttle_threshold: p.throttle_threshold,
            throttled_streak: 0,
        }
    }

    pub fn record(&mut self, s: &Sample, now: Instant) {
        if let Some(bytes) = s.memory_peak_bytes {
            self.memory.add(bytes as f64, 1.0, now);
        }
        if let Some(millicores) = s.cpu_millicores {
            self.cpu.add(millicores as f64, 1.0, now);
        }
        if s.memory_peak_bytes.is_some() || s.cpu_millicores.is_some() {
            self.first_sample.get_or_insert(now);
        }
        if s.oom_bytes.is_some() {
            self.oom_pending_bytes = self.oom_pending_bytes.max(s.oom_bytes);
        }
        // No throttling at all never counts, even with a threshold of 0.
        let throttled =
            s.throttled_fraction > 0.0 && s.throttled_fraction >= self.throttle_threshold;
        self.throttled_streak = if throttled {
            self.throttled_streak.saturating_add(1)
        } else {
            0
        };
    }

    /// Time since the first sample (Duration::ZERO before any).
    pub fn span(&self, now: Instant) -> Duration {
        self.first_sample
            .map_or(Duration::ZERO, |first| now.saturating_duration_since(first))
    }

    /// Nothing to act on: no usage recorded and no OOM pending.
    pub fn is_empty(&self) -> bool {
        self.first_sample.is_none() && self.oom_pending_bytes.is_none()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Usage,
    Oom,
    Throttled,
}

/// Per dimension: where usage says the quota should be, and the band inside which the
/// current quota is left alone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recommendation {
    pub target: Quota,
    pub lower: Quota,
    pub upper: Quota,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    /// Too little history for a dimension-changing decision, or the current quota is inside
    /// the band.
    Keep,
    Resize {
        quota: Quota,
        reason: Reason,
    },
}

/// One dimension's unrounded, unclamped recommendation.
#[derive(Clone, Copy)]
struct Band {
    target: f64,
    lower: f64,
    upper: f64,
}

impl Band {
    /// VPA's estimators: percentiles plus the margin, the bounds scaled by the confidence
    /// multipliers (1 + 0.001/c)^−2 and (1 + 1/c), so short history keeps the band wide
    /// upward and a quota is not shrunk on little evidence. Kept in lower ≤ target ≤ upper.
    fn of(
        h: &DecayingHistogram,
        target_percentile: f64,
        p: &Params,
        confidence: f64,
    ) -> Option<Self> {
        let margin = 1.0 + p.safety_margin;
        let (lower_multiplier, upper_multiplier) = if confidence > 0.0 {
            ((1.0 + 0.001 / confidence).powi(-2), 1.0 + 1.0 / confidence)
        } else {
            (0.0, f64::INFINITY)
        };
        let target = h.percentile(target_percentile)? * margin;
        let lower = h.percentile(p.lower_percentile)? * margin * lower_multiplier;
        let upper = h.percentile(p.upper_percentile)? * margin * upper_multiplier;
        Some(Band {
            target,
            lower: lower.min(target),
            upper: upper.max(target),
        })
    }
}

/// Rounds up to a whole unit; saturates (infinity → u64::MAX, NaN → 0).
fn ceil_u64(x: f64) -> u64 {
    x.ceil() as u64
}

/// `bounds.clamp` of the recommended dimensions; one without a recommendation stays at
/// `current`, clamped or not, so it is never moved.
fn quota_of(bounds: &Bounds, current: Quota, memory: Option<f64>, cpu: Option<f64>) -> Quota {
    let clamped = bounds.clamp(Quota {
        memory_bytes: memory.map_or(current.memory_bytes, ceil_u64),
        cpu_millicores: cpu.map_or(current.cpu_millicores, ceil_u64),
    });
    Quota {
        memory_bytes: if memory.is_some() {
            clamped.memory_bytes
        } else {
            current.memory_bytes
        },
        cpu_millicores: if cpu.is_some() {
            clamped.cpu_millicores
        } else {
            current.cpu_millicores
        },
    }
}

/// The recommendation, and whether each dimension had samples to make one from.
fn recommend(
    h: &History,
    current: Quota,
    bounds: &Bounds,
    p: &Params,
    now: Instant,
) -> (Recommendation, bool, bool) {
    let confidence = if p.confidence_period.is_zero() {
        f64::INFINITY
    } else {
        h.span(now).as_secs_f64() / p.confidence_period.as_secs_f64()
    };
    let memory = Band::of(&h.memory, p.memory_percentile, p, confidence);
    let cpu = Band::of(&h.cpu, p.cpu_percentile, p, confidence);
    let pick = |f: fn(Band) -> f64| quota_of(bounds, current, memory.map(f), cpu.map(f));
    let rec = Recommendation {
        target: pick(|b| b.target),
        lower: pick(|b| b.lower),
        upper: pick(|b| b.upper),
    };
    (rec, memory.is_some(), cpu.is_some())
}

/// Weight of the synthetic OOM sample, in plain samples: enough to hold twice the tail
/// mass above the lower of the target and upper percentiles, so the next decide keeps the
/// bump instead of drowning one sample among thousands of per-second peaks. It fades as
/// fresh peaks outweigh it (about 6 min at the default half-life) unless usage backs it.
fn oom_sample_weight(h: &DecayingHistogram, p: &Params, now: Instant) -> f64 {
    bump_sample_weight(h, p.memory_percentile.min(p.upper_percentile), now)
}

/// The same rule for any bump sample, against percentile `q`.
fn bump_sample_weight(h: &DecayingHistogram, q: f64, now: Instant) -> f64 {
    let q = q.clamp(0.01, 1.0);
    (h.total_samples_at(now) * 2.0 * (1.0 - q) / q).max(1.0)
}

/// Recommend and decide for one function. Takes `&mut History` only to consume a pending
/// OOM event and reset the throttling streak once acted on (still pure: no I/O, no clock).
/// The recommendation returned is the one the decision was made from (before any OOM
/// sample this call adds).
pub fn decide(
    history: &mut History,
    current: Quota,
    bounds: &Bounds,
    p: &Params,
    now: Instant,
) -> (Option<Recommendation>, Decision) {
    if history.is_empty() {
        return (None, Decision::Keep);
    }
    let (rec, has_memory, has_cpu) = recommend(history, current, bounds, p, now);
    let mut quota = current;
    let mut reason = None;

    // 1. OOM: VPA feeds the bump in as a memory sample; so do we, so the target holds it.
    if let Some(used_bytes) = history.oom_pending_bytes.take() {
        let bump_bytes = ceil_u64(used_bytes as f64 * p.oom_bump_ratio)
            .max(used_bytes.saturating_add(p.oom_bump_floor_bytes));
        let weight = oom_sample_weight(&history.memory, p, now);
        history.memory.add(bump_bytes as f64, weight, now);
        let target_bytes = if has_memory {
            rec.target.memory_bytes
        } else {
            0
        };
        let memory_bytes = bounds
            .clamp(Quota {
                memory_bytes: bump_bytes.max(target_bytes),
                ..current
            })
            .memory_bytes;
        if memory_bytes > current.memory_bytes {
            quota.memory_bytes = memory_bytes;
            reason = Some(Reason::Oom);
        }
    }

    // 2. Sustained throttling: usage under-reports a CPU-starved function, so raise by a
    // factor rather than trusting the histogram.
    if history.throttled_streak >= p.throttle_sustain.max(1) {
        history.throttled_streak = 0;
        let target_millicores = if has_cpu {
            rec.target.cpu_millicores
        } else {
            0
        };
        let raised =
            ceil_u64(current.cpu_millicores as f64 * p.throttle_raise).max(target_millicores);
        let cpu_millicores = bounds
            .clamp(Quota {
                cpu_millicores: raised,
                ..current
            })
            .cpu_millicores;
        if cpu_millicores > current.cpu_millicores {
            quota.cpu_millicores = cpu_millicores;
            reason.get_or_insert(Reason::Throttled);
            // Samples taken while throttled sit at the old quota: without this one, the
            // next usage decision would find the raise above its band and take it back.
            let q = p.cpu_percentile.min(p.upper_percentile);
            let weight = bump_sample_weight(&history.cpu, q, now);
            history.cpu.add(cpu_millicores as f64, weight, now);
        }
    }

    if let Some(reason) = reason {
        return (Some(rec), Decision::Resize { quota, reason });
    }

    // 3. Usage: a dimension outside its band goes to its target.
    let settle = |cur: u64, lower: u64, upper: u64, target: u64| {
        if cur < lower || cur > upper {
            target
        } else {
            cur
        }
    };
    let next = Quota {
        memory_bytes: settle(
            current.memory_bytes,
            rec.lower.memory_bytes,
            rec.upper.memory_bytes,
            rec.target.memory_bytes,
        ),
        cpu_millicores: settle(
            current.cpu_millicores,
            rec.lower.cpu_millicores,
            rec.upper.cpu_millicores,
            rec.target.cpu_millicores,
        ),
    };
    let decision = if next == current {
        Decision::Keep
    } else {
        Decision::Resize {
            quota: next,
            reason: Reason::Usage,
        }
    };
    (Some(rec), decision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::Range;

    const MIB: u64 = 1 << 20;
    const BOUNDS: Bounds = Bounds {
        memory_min_bytes: 16 * MIB,
        memory_max_bytes: 4096 * MIB,
        cpu_min_millicores: 10,
        cpu_max_millicores: 8000,
    };

    fn sample(memory_peak_bytes: u64, cpu_millicores: u64) -> Sample {
        Sample {
            memory_peak_bytes: Some(memory_peak_bytes),
            cpu_millicores: Some(cpu_millicores),
            throttled_fraction: 0.0,
            oom_bytes: None,
        }
    }

    fn quota(memory_bytes: u64, cpu_millicores: u64) -> Quota {
        Quota {
            memory_bytes,
            cpu_millicores,
        }
    }

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    /// Records `s` once a second, at each of `secs` after `t0`.
    fn feed(h: &mut History, t0: Instant, secs: Range<u64>, s: Sample) {
        for n in secs {
            h.record(&s, at(t0, n));
        }
    }

    /// `got` is `usage` rounded up by at most one bucket, plus the margin. A bucket is
    /// `first + (ratio − 1) × start` wide: 5% asymptotically, more near the first bucket.
    fn within_a_bucket(got: u64, usage: u64, first_bucket: f64, p: &Params) -> bool {
        let margin = 1.0 + p.safety_margin;
        let most = (usage as f64 * BUCKET_RATIO + first_bucket) * margin;
        got as f64 >= usage as f64 * margin && got as f64 <= most.ceil()
    }

    fn memory_within_a_bucket(got: u64, usage: u64, p: &Params) -> bool {
        within_a_bucket(got, usage, MEMORY_FIRST_BUCKET_BYTES, p)
    }

    /// History of `secs` seconds of steady `memory_bytes` / `cpu_millicores`.
    fn steady(
        p: &Params,
        t0: Instant,
        secs: u64,
        memory_bytes: u64,
        cpu_millicores: u64,
    ) -> History {
        let mut h = History::new(p);
        feed(&mut h, t0, 0..secs, sample(memory_bytes, cpu_millicores));
        h
    }

    #[test]
    fn steady_usage_converges_to_percentile_plus_margin() {
        let p = Params::default();
        let t0 = Instant::now();
        let mut h = steady(&p, t0, 3600, 40 * MIB, 200);
        let (rec, d) = decide(&mut h, quota(1024 * MIB, 4000), &BOUNDS, &p, at(t0, 3600));
        let rec = rec.expect("history is not empty");
        assert!(
            memory_within_a_bucket(rec.target.memory_bytes, 40 * MIB, &p),
            "{rec:?}"
        );
        assert!(
            within_a_bucket(
                rec.target.cpu_millicores,
                200,
                CPU_FIRST_BUCKET_MILLICORES,
                &p
            ),
            "{rec:?}"
        );
        assert_eq!(
            d,
            Decision::Resize {
                quota: rec.target,
                reason: Reason::Usage
            }
        );
        // Once there, it stays.
        assert_eq!(
            decide(&mut h, rec.target, &BOUNDS, &p, at(t0, 3600)).1,
            Decision::Keep
        );
    }

    #[test]
    fn a_single_spike_does_not_move_the_target() {
        let p = Params::default();
        let t0 = Instant::now();
        let want = decide(
            &mut steady(&p, t0, 3600, 40 * MIB, 200),
            quota(64 * MIB, 250),
            &BOUNDS,
            &p,
            at(t0, 3600),
        )
        .0;
        for spike_at in [0, 1800, 3599] {
            let mut h = steady(&p, t0, 3600, 40 * MIB, 200);
            h.record(&sample(900 * MIB, 4000), at(t0, spike_at));
            let got = decide(&mut h, quota(64 * MIB, 250), &BOUNDS, &p, at(t0, 3600)).0;
            assert_eq!(
                got.map(|r| r.target),
                want.map(|r| r.target),
                "spike at {spike_at}s"
            );
        }
    }

    #[test]
    fn target_follows_a_load_drop_after_the_decay() {
        let p = Params::default();
        let (old_secs, h_secs) = (1800.0, p.half_life.as_secs_f64());
        // After t seconds at the new level, with x = 2^(t/half_life), the new samples hold
        // (x − 1) / (x − 2^(−old/half_life)) of the weight; p95 moves once that is 0.95.
        let x = 20.0 - 19.0 * (-old_secs / h_secs).exp2();
        let crossover_secs = h_secs * x.log2();
        let t0 = Instant::now();
        let mut h = steady(&p, t0, 1800, 100 * MIB, 200);
        let mut fed = 1800;
        for (frac, usage) in [(0.97, 100 * MIB), (1.03, 20 * MIB)] {
            let until = 1800 + (crossover_secs * frac) as u64;
            feed(&mut h, t0, fed..until, sample(20 * MIB, 200));
            fed = until;
            let (rec, _) = decide(&mut h, quota(64 * MIB, 250), &BOUNDS, &p, at(t0, until));
            let target = rec.expect("not empty").target.memory_bytes;
            assert!(
                memory_within_a_bucket(target, usage, &p),
                "{frac}: {target}"
            );
        }
    }

    #[test]
    fn long_runs_rescale_weights_without_losing_the_shape() {
        // A 1 s half-life passes MAX_DECAY_EXPONENT every 100 samples.
        let p = Params {
            half_life: Duration::from_secs(1),
            ..Params::default()
        };
        let t0 = Instant::now();
        let mut h = steady(&p, t0, 1000, 100 * MIB, 500);
        let rec = decide(&mut h, quota(64 * MIB, 250), &BOUNDS, &p, at(t0, 1000)).0;
        assert!(h.memory.total_weight.is_finite());
        assert!(memory_within_a_bucket(
            rec.expect("not empty").target.memory_bytes,
            100 * MIB,
            &p
        ));
        // Five half-lives later the old level holds ~3% of the weight: below the p95 tail.
        feed(&mut h, t0, 1000..1005, sample(20 * MIB, 500));
        let rec = decide(&mut h, quota(64 * MIB, 250), &BOUNDS, &p, at(t0, 1005)).0;
        assert!(memory_within_a_bucket(
            rec.expect("not empty").target.memory_bytes,
            20 * MIB,
            &p
        ));
    }

    #[test]
    fn oom_bumps_memory_and_the_next_decide_keeps_it() {
        let p = Params::default();
        let ratio = |used: u64| (used as f64 * p.oom_bump_ratio).ceil() as u64;
        // (used, memory ceiling, want): the floor wins for small, the ratio for large.
        let rows = [
            (60 * MIB, 4096 * MIB, 60 * MIB + 16 * MIB),
            (200 * MIB, 4096 * MIB, ratio(200 * MIB)),
            (200 * MIB, 128 * MIB, 128 * MIB),
        ];
        for (used, max, want) in rows {
            let bounds = Bounds {
                memory_max_bytes: max,
                ..BOUNDS
            };
            let t0 = Instant::now();
            let mut h = steady(&p, t0, 3600, 40 * MIB, 200);
            h.record(
                &Sample {
                    oom_bytes: Some(used),
                    ..sample(40 * MIB, 200)
                },
                at(t0, 3600),
            );
            let current = quota(48 * MIB, 250);
            let (_, d) = decide(&mut h, current, &bounds, &p, at(t0, 3601));
            let bumped = quota(want, 250);
            assert_eq!(
                d,
                Decision::Resize {
                    quota: bumped,
                    reason: Reason::Oom
                },
                "used {used}"
            );
            feed(&mut h, t0, 3601..3611, sample(40 * MIB, 200));
            let (_, d) = decide(&mut h, bumped, &bounds, &p, at(t0, 3611));
            assert_eq!(d, Decision::Keep, "used {used}: undone");
        }
    }

    #[test]
    fn oom_below_the_target_goes_to_the_target() {
        let p = Params::default();
        let t0 = Instant::now();
        let mut h = steady(&p, t0, 3600, 40 * MIB, 200);
        h.record(
            &Sample {
                oom_bytes: Some(MIB),
                ..sample(40 * MIB, 200)
            },
            at(t0, 3600),
        );
        let (rec, d) = decide(&mut h, quota(20 * MIB, 250), &BOUNDS, &p, at(t0, 3601));
        let target_bytes = rec.expect("not empty").target.memory_bytes;
        assert_eq!(
            d,
            Decision::Resize {
                quota: quota(target_bytes, 250),
                reason: Reason::Oom
            }
        );
        // Consumed: a plain usage decision follows.
        let (_, d) = decide(&mut h, quota(20 * MIB, 250), &BOUNDS, &p, at(t0, 3601));
        assert!(matches!(
            d,
            Decision::Resize {
                reason: Reason::Usage,
                ..
            }
        ));
    }

    #[test]
    fn sustained_throttling_raises_cpu() {
        let p = Params::default();
        // (throttled fractions, one a second; cpu ceiling; want): current cpu is 250 m.
        let rows: [(&[f64], u64, Option<u64>); 5] = [
            (&[0.5, 0.5, 0.5], 8000, Some(500)),
            (&[0.5, 0.5, 0.5], 300, Some(300)),
            (&[0.5], 8000, None),
            (&[0.5, 0.0, 0.5, 0.5], 8000, None),
            (&[0.05, 0.05, 0.05], 8000, None),
        ];
        for (fractions, max, want) in rows {
            let bounds = Bounds {
                cpu_max_millicores: max,
                ..BOUNDS
            };
            let t0 = Instant::now();
            let mut h = History::new(&p);
            for (n, &f) in fractions.iter().enumerate() {
                let s = Sample {
                    throttled_fraction: f,
                    ..sample(40 * MIB, 200)
                };
                h.record(&s, at(t0, n as u64));
            }
            let current = quota(48 * MIB, 250);
            let now = at(t0, fractions.len() as u64);
            let (_, d) = decide(&mut h, current, &bounds, &p, now);
            let want = want.map_or(Decision::Keep, |cpu| Decision::Resize {
                quota: quota(48 * MIB, cpu),
                reason: Reason::Throttled,
            });
            assert_eq!(d, want, "{fractions:?} max {max}");
            // The streak is reset once acted on.
            assert_eq!(decide(&mut h, current, &bounds, &p, now).1, Decision::Keep);
        }
    }

    #[test]
    fn a_throttle_raise_is_not_taken_back_by_the_next_usage_decision() {
        let p = Params::default();
        let t0 = Instant::now();
        // An hour at 250m, throttled (usage sits at the quota), then the raise.
        let mut h = History::new(&p);
        let throttled = Sample {
            throttled_fraction: 0.5,
            ..sample(40 * MIB, 250)
        };
        feed(&mut h, t0, 0..3600, throttled);
        let current = quota(48 * MIB, 250);
        let (_, d) = decide(&mut h, current, &BOUNDS, &p, at(t0, 3600));
        let Decision::Resize { quota: raised, .. } = d else {
            panic!("throttling raises: {d:?}")
        };
        assert_eq!(raised.cpu_millicores, 500);
        // The next seconds still show usage near the old quota (the raise is just in).
        feed(&mut h, t0, 3601..3605, sample(40 * MIB, 260));
        let (rec, d) = decide(&mut h, raised, &BOUNDS, &p, at(t0, 3605));
        assert_eq!(d, Decision::Keep, "{rec:?}");
    }

    #[test]
    fn oom_and_throttling_combine_into_one_resize() {
        let p = Params::default();
        let t0 = Instant::now();
        let mut h = History::new(&p);
        for (n, oom_bytes) in [None, None, Some(60 * MIB)].into_iter().enumerate() {
            let s = Sample {
                throttled_fraction: 0.5,
                oom_bytes,
                ..sample(40 * MIB, 200)
            };
            h.record(&s, at(t0, n as u64));
        }
        let (_, d) = decide(&mut h, quota(48 * MIB, 250), &BOUNDS, &p, at(t0, 3));
        assert_eq!(
            d,
            Decision::Resize {
                quota: quota(76 * MIB, 500),
                reason: Reason::Oom
            }
        );
    }

    #[test]
    fn bounds_clamp_both_ways() {
        let p = Params::default();
        // (usage, current, want): tiny usage stops at the floor, huge at the ceiling.
        let rows = [
            ((MIB, 1), quota(1024 * MIB, 4000), quota(16 * MIB, 10)),
            (
                (8192 * MIB, 20_000),
                quota(64 * MIB, 100),
                quota(4096 * MIB, 8000),
            ),
        ];
        for ((memory_bytes, cpu_millicores), current, want) in rows {
            let t0 = Instant::now();
            let mut h = steady(&p, t0, 3600, memory_bytes, cpu_millicores);
            let (rec, d) = decide(&mut h, current, &BOUNDS, &p, at(t0, 3600));
            let rec = rec.expect("not empty");
            for q in [rec.target, rec.lower, rec.upper] {
                assert_eq!(BOUNDS.clamp(q), q, "{rec:?}");
            }
            assert_eq!(
                d,
                Decision::Resize {
                    quota: want,
                    reason: Reason::Usage
                }
            );
        }
    }

    #[test]
    fn short_history_widens_the_band() {
        let p = Params::default();
        // A quota 3× the usage: kept on 10 s of evidence, shrunk on an hour of it.
        for (secs, shrinks) in [(10, false), (3600, true)] {
            let t0 = Instant::now();
            let mut h = steady(&p, t0, secs, 40 * MIB, 200);
            let (rec, d) = decide(&mut h, quota(120 * MIB, 600), &BOUNDS, &p, at(t0, secs));
            let want = if shrinks {
                Decision::Resize {
                    quota: rec.expect("not empty").target,
                    reason: Reason::Usage,
                }
            } else {
                Decision::Keep
            };
            assert_eq!(d, want, "{secs}s");
        }
    }

    #[test]
    fn a_dimension_without_samples_is_left_alone() {
        let p = Params::default();
        let t0 = Instant::now();
        let mut h = History::new(&p);
        let memory_only = Sample {
            cpu_millicores: None,
            ..sample(40 * MIB, 0)
        };
        feed(&mut h, t0, 0..3600, memory_only);
        // Outside the bounds too: with no evidence, CPU is not touched.
        let current = quota(1024 * MIB, 9000);
        let (rec, d) = decide(&mut h, current, &BOUNDS, &p, at(t0, 3600));
        let rec = rec.expect("not empty");
        for q in [rec.target, rec.lower, rec.upper] {
            assert_eq!(q.cpu_millicores, 9000);
        }
        assert_eq!(
            d,
            Decision::Resize {
                quota: quota(rec.target.memory_bytes, 9000),
                reason: Reason::Usage
            }
        );
    }

    #[test]
    fn no_usage_is_not_enough_data() {
        let p = Params::default();
        let t0 = Instant::now();
        let idle = Sample {
            memory_peak_bytes: None,
            cpu_millicores: None,
            throttled_fraction: 0.0,
            oom_bytes: None,
        };
        for secs in [0, 60] {
            let mut h = History::new(&p);
            feed(&mut h, t0, 0..secs, idle);
            assert!(h.is_empty());
            assert_eq!(h.span(at(t0, secs)), Duration::ZERO);
            assert_eq!(
                decide(&mut h, quota(64 * MIB, 250), &BOUNDS, &p, at(t0, secs)),
                (None, Decision::Keep)
            );
        }
    }
}
