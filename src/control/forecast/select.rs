//! Online model selection: every forecaster is refitted on a function's series at each new
//! point and scored, in hindsight, on the forecast it made for that point; the policy uses
//! whichever has the lowest recent error for this function. The error is an exponentially
//! weighted mean absolute error, so a forecaster that was right last hour is preferred to
//! one that was right yesterday.
//!
//! The candidates: the last value (naive), linear regression on 3 lags (`ar`), simple
//! exponential smoothing and Holt's linear trend (`ets`), and ARIMA(1,1,1) (`arima`). A
//! candidate that cannot fit yet (too few points) makes no forecast and is not scored.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::ar::Ar;
use super::arima::Arima;
use super::ets::{Ets, Trend};

/// Points kept and fitted on.
pub const HISTORY: usize = 120;
/// Weight of the newest error in the running mean.
const ERROR_WEIGHT: f64 = 0.2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Forecaster {
    Naive,
    Ar3,
    Ses,
    Holt,
    Arima111,
}

pub const FORECASTERS: [Forecaster; 5] = [
    Forecaster::Naive,
    Forecaster::Ar3,
    Forecaster::Ses,
    Forecaster::Holt,
    Forecaster::Arima111,
];

impl Forecaster {
    pub fn as_str(self) -> &'static str {
        match self {
            Forecaster::Naive => "naive",
            Forecaster::Ar3 => "ar(3)",
            Forecaster::Ses => "ets(a,n,n)",
            Forecaster::Holt => "ets(a,a,n)",
            Forecaster::Arima111 => "arima(1,1,1)",
        }
    }

    /// The next value after `y`, if this forecaster can fit `y`.
    pub fn next(self, y: &[f64]) -> Option<f64> {
        let v = match self {
            Forecaster::Naive => *y.last()?,
            Forecaster::Ar3 => Ar::fit(y, 3).ok()?.forecast(y, 1)[0],
            Forecaster::Ses => Ets::fit(y, Trend::None).ok()?.forecast(1)[0],
            Forecaster::Holt => Ets::fit(y, Trend::Additive).ok()?.forecast(1)[0],
            Forecaster::Arima111 => Arima::fit(y, 1, 1, 1).ok()?.forecast(1)[0],
        };
        v.is_finite().then_some(v)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Selector {
    history: VecDeque<f64>,
    /// Per forecaster: its forecast of the next point, and its running error (None until
    /// it has been scored once).
    pending: Vec<Option<f64>>,
    error: Vec<Option<f64>>,
}

impl Default for Selector {
    fn default() -> Self {
        Selector {
            history: VecDeque::with_capacity(HISTORY),
            pending: vec![None; FORECASTERS.len()],
            error: vec![None; FORECASTERS.len()],
        }
    }
}

impl Selector {
    /// A new point: score every forecast made for it, then refit and forecast the next.
    pub fn observe(&mut self, value: f64) {
        for (i, f) in self.pending.iter().enumerate() {
            if let Some(f) = f {
                let e = (f - value).abs();
                self.error[i] = Some(match self.error[i] {
                    Some(old) => old + ERROR_WEIGHT * (e - old),
                    None => e,
                });
            }
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(value);
        let y: Vec<f64> = self.history.iter().copied().collect();
        self.pending = FORECASTERS.iter().map(|f| f.next(&y)).collect();
    }

    /// A new point on a quiet series: kept, with no refit and no forecast until the next
    /// [`observe`](Self::observe) (fitting five models a bucket is for busy functions).
    pub fn observe_quiet(&mut self, value: f64) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(value);
        self.pending = vec![None; FORECASTERS.len()];
    }

    /// The forecaster with the lowest recent error that has a forecast now, and that
    /// forecast; the naive one until any has been scored.
    pub fn best(&self) -> Option<(Forecaster, f64)> {
        let scored = (0..FORECASTERS.len())
            .filter_map(|i| Some((i, self.error[i]?, self.pending[i]?)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        match scored {
            Some((i, _, f)) => Some((FORECASTERS[i], f)),
            None => self.pending[0].map(|f| (Forecaster::Naive, f)),
        }
    }

    /// Each forecaster's running error (None: not scored yet).
    pub fn errors(&self) -> impl Iterator<Item = (Forecaster, Option<f64>)> + '_ {
        FORECASTERS.iter().copied().zip(self.error.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn best_after(series: impl IntoIterator<Item = f64>) -> (Selector, Forecaster, f64) {
        let mut s = Selector::default();
        for v in series {
            s.observe(v);
        }
        let (f, next) = s.best().unwrap();
        (s, f, next)
    }

    /// A steady ramp: the trend models win and forecast its next step; the naive one lags
    /// a whole step behind.
    #[test]
    fn a_ramp_is_followed_by_a_trend_model() {
        let (s, f, next) = best_after((0..40).map(|t| 100.0 + 10.0 * t as f64));
        assert_ne!(f, Forecaster::Naive, "{:?}", s.errors().collect::<Vec<_>>());
        assert!((next - 500.0).abs() < 5.0, "{f:?}: {next}");
    }

    /// Alternating load (with a little noise): the lag models catch the swing, the last
    /// value and the smoothers never do.
    #[test]
    fn a_swing_is_caught_by_a_lag_model() {
        let noise = |t: u32| ((t * 37) % 11) as f64 - 5.0;
        let swing = (0..40u32).map(|t| if t % 2 == 0 { 50.0 } else { 150.0 } + noise(t));
        let (s, f, next) = best_after(swing);
        assert!(
            matches!(f, Forecaster::Ar3 | Forecaster::Arima111),
            "{f:?} {:?}",
            s.errors().collect::<Vec<_>>()
        );
        assert!((next - 50.0).abs() < 12.0, "{f:?}: {next}");
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut s = Selector::default();
        for v in [3.0, 5.0, 4.0, 6.0, 5.0, 7.0, 6.0, 8.0] {
            s.observe(v);
        }
        let back: Selector = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
