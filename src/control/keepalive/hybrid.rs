//! The hybrid histogram policy of Shahrad et al., "Serverless in the Wild" (USENIX ATC'20,
//! section 4.2), from the paper's description:
//!
//! - Per function, a histogram of idle times (the whole minutes between two activities) in
//!   1-minute bins over a range of 4 hours. Longer idle times are counted as out of bounds.
//! - When the histogram is representative, the pre-warm window is its head (5th percentile)
//!   less a 10 % margin, and the instance stays loaded until its tail (99th percentile)
//!   plus a 10 % margin.
//! - It is representative when the coefficient of variation of its bin counts is at least
//!   2: idle times concentrated in a few bins. Until then, and with no idle time seen, the
//!   policy falls back to the standard keep-alive: no pre-warm, loaded for the whole range.
//! - When most idle times fall out of bounds, the paper predicts the next idle time with
//!   ARIMA, and pre-warms at 85 % of the prediction and keeps the instance to 115 % of it
//!   (a 15 % margin each side). Here that is an ARIMA(1,0,0) by Hannan–Rissanen
//!   (`control::forecast::arima`) on the function's last [`HISTORY`] idle times, refitted
//!   at each one; the paper used an automatic order search, which a handful of idle times a
//!   day cannot support. With fewer than [`ARIMA_MIN`] idle times, the standard keep-alive.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::control::forecast::arima::Arima;

use super::policy::{Fit, KeepAlive, Windows, STANDARD_RANGE};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Bins of one tick (a minute, as in the paper, on the minute model): idle times
    /// 0..range-1 are in range.
    pub range: u32,
    /// Percentiles (0..100) of the histogram for the pre-warm and keep-alive ends.
    pub head_percentile: f64,
    pub tail_percentile: f64,
    /// Fraction taken off the head and added to the tail.
    pub margin: f64,
    /// The histogram is representative at or above this coefficient of variation.
    pub min_cv: f64,
    /// At or above this fraction of idle times out of bounds, the paper switches to ARIMA.
    pub max_out_of_bounds: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            range: STANDARD_RANGE,
            head_percentile: 5.0,
            tail_percentile: 99.0,
            margin: 0.10,
            min_cv: 2.0,
            max_out_of_bounds: 0.5,
        }
    }
}

/// Idle times the ARIMA branch fits on.
pub const HISTORY: usize = 64;
/// Idle times the ARIMA branch needs before it predicts.
pub const ARIMA_MIN: usize = 4;
/// The ARIMA branch's margins: pre-warm at (1 − m) × the prediction, loaded to (1 + m) × it.
const ARIMA_MARGIN: f64 = 0.15;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hybrid {
    params: Params,
    bins: Vec<u32>,
    in_range: u64,
    out_of_bounds: u64,
    /// Σ count² over the bins, kept as idle times arrive, for the CV in O(1).
    sum_squares: u64,
    /// The last idle times (newest last), and the ARIMA branch's prediction of the next.
    history: VecDeque<u32>,
    predicted: Option<f64>,
}

impl Hybrid {
    pub fn new(params: Params) -> Self {
        Hybrid {
            bins: vec![0; params.range.max(1) as usize],
            params,
            in_range: 0,
            out_of_bounds: 0,
            sum_squares: 0,
            history: VecDeque::with_capacity(HISTORY),
            predicted: None,
        }
    }

    /// The next idle time by ARIMA(1,0,0) on the history; a series that does not determine
    /// it (all idle times equal) predicts its mean.
    fn predict(&self) -> Option<f64> {
        if self.history.len() < ARIMA_MIN {
            return None;
        }
        let y: Vec<f64> = self.history.iter().map(|&m| m as f64).collect();
        let next = match Arima::fit(&y, 1, 0, 0) {
            Ok(m) => m.forecast(1)[0],
            Err(_) => y.iter().sum::<f64>() / y.len() as f64,
        };
        Some(next.max(0.0))
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The parameters [`PolicySpec::start`](super::PolicySpec::start) gives for `fit`: the
    /// paper's, over the fit's range.
    pub fn params_for(fit: &Fit) -> Params {
        Params {
            range: fit.max_keepalive.max(1),
            ..Params::default()
        }
    }

    /// Coefficient of variation of the bin counts (zero bins included); 0 when empty.
    pub fn cv(&self) -> f64 {
        if self.in_range == 0 {
            return 0.0;
        }
        let n = self.bins.len() as f64;
        let mean = self.in_range as f64 / n;
        let var = (self.sum_squares as f64 / n - mean * mean).max(0.0);
        var.sqrt() / mean
    }

    /// The smallest idle time whose cumulative share reaches `p` percent of the in-range
    /// idle times.
    fn percentile(&self, p: f64) -> u32 {
        let want = (p / 100.0 * self.in_range as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (minute, &c) in self.bins.iter().enumerate() {
            seen += c as u64;
            if seen >= want {
                return minute as u32;
            }
        }
        self.bins.len() as u32 - 1
    }

    fn standard(&self) -> Windows {
        Windows {
            prewarm: 0,
            keepalive: self.params.range,
        }
    }
}

impl KeepAlive for Hybrid {
    fn observe_idle(&mut self, minutes: u32) {
        match self.bins.get_mut(minutes as usize) {
            Some(c) => {
                // (c+1)² − c² = 2c + 1
                self.sum_squares += 2 * *c as u64 + 1;
                *c += 1;
                self.in_range += 1;
            }
            None => self.out_of_bounds += 1,
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(minutes);
        // Fitted only where it is used: most idle times out of bounds.
        let seen = self.in_range + self.out_of_bounds;
        self.predicted = if self.out_of_bounds as f64 >= self.params.max_out_of_bounds * seen as f64
        {
            self.predict()
        } else {
            None
        };
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn windows(&self) -> Windows {
        let seen = self.in_range + self.out_of_bounds;
        if seen > 0 && self.out_of_bounds as f64 >= self.params.max_out_of_bounds * seen as f64 {
            return match self.predicted {
                Some(next) => {
                    let prewarm = (next * (1.0 - ARIMA_MARGIN)).floor() as u32;
                    let end = (next * (1.0 + ARIMA_MARGIN)).ceil() as u32;
                    Windows {
                        prewarm,
                        keepalive: end.saturating_sub(prewarm) + 1,
                    }
                }
                None => self.standard(),
            };
        }
        if seen == 0 || self.cv() < self.params.min_cv {
            return self.standard();
        }
        let head = self.percentile(self.params.head_percentile);
        let tail = self.percentile(self.params.tail_percentile);
        let prewarm = (head as f64 * (1.0 - self.params.margin)).floor() as u32;
        // Loaded through idle time `end`: the next activity at idle time i is warm when
        // prewarm <= i <= end (the minute model: loaded prev+P+1 ..= prev+P+K).
        let end = (tail as f64 * (1.0 + self.params.margin)).ceil() as u32;
        Windows {
            prewarm,
            keepalive: end.saturating_sub(prewarm) + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_periodic_function_is_prewarmed_just_before_and_kept_just_past_its_period() {
        let mut h = Hybrid::new(Params::default());
        assert_eq!(
            h.windows(),
            h.standard(),
            "nothing seen: the standard keep-alive"
        );
        // A timer every 30 minutes: idle 29 minutes between busy minutes.
        for _ in 0..20 {
            h.observe_idle(29);
        }
        assert!(h.cv() > 2.0);
        let w = h.windows();
        assert_eq!(w.prewarm, 26, "29 less 10 %, rounded down");
        // Loaded through idle time ceil(29 × 1.1) = 32.
        assert_eq!(w.prewarm + w.keepalive - 1, 32);
    }

    #[test]
    fn spread_out_or_out_of_range_idle_times_fall_back_to_the_standard_keep_alive() {
        let mut h = Hybrid::new(Params::default());
        for m in 0..240 {
            h.observe_idle(m);
        }
        assert!(h.cv() < 2.0, "uniform: cv {}", h.cv());
        assert_eq!(h.windows(), h.standard());

        let mut h = Hybrid::new(Params::default());
        h.observe_idle(5);
        for _ in 0..2 {
            h.observe_idle(600);
        }
        assert_eq!(
            h.windows(),
            h.standard(),
            "mostly out of bounds, too few for ARIMA"
        );
    }

    /// Mostly out of bounds, with enough idle times: ARIMA predicts the next, and the
    /// instance is loaded from 85 % to 115 % of it.
    #[test]
    fn out_of_bounds_idle_times_are_predicted_by_arima() {
        let mut h = Hybrid::new(Params::default());
        for m in [5, 600, 600, 600, 600] {
            h.observe_idle(m);
        }
        // AR(1) around the mean 481, with the 5 an outlier: about 475.
        let next = h.predicted.unwrap();
        assert!((400.0..=700.0).contains(&next), "{next}");
        let w = h.windows();
        assert_eq!(w.prewarm, (next * 0.85).floor() as u32);
        assert_eq!(w.prewarm + w.keepalive - 1, (next * 1.15).ceil() as u32);
        // All equal: the mean.
        let mut h = Hybrid::new(Params::default());
        for _ in 0..5 {
            h.observe_idle(300);
        }
        assert_eq!(h.predicted, Some(300.0));
        assert_eq!(
            h.windows(),
            Windows {
                prewarm: 255,
                keepalive: 91
            }
        );
    }

    #[test]
    fn the_running_cv_matches_a_direct_computation() {
        let mut h = Hybrid::new(Params::default());
        for m in [0, 0, 0, 3, 3, 10, 200, 239, 0, 5] {
            h.observe_idle(m);
        }
        let n = h.bins.len() as f64;
        let mean = h.bins.iter().map(|&c| c as f64).sum::<f64>() / n;
        let var = h
            .bins
            .iter()
            .map(|&c| (c as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!((h.cv() - var.sqrt() / mean).abs() < 1e-9);
        // Head: the 5th percentile of ten idle times is the first (0); tail: the 99th is
        // the largest (239).
        assert_eq!(h.percentile(5.0), 0);
        assert_eq!(h.percentile(99.0), 239);
        assert_eq!(h.percentile(50.0), 3);
    }
}
