//! Linear regression on lags: y[t] = c + a1·y[t−1] + … + ap·y[t−p] + e[t], fitted by
//! ordinary least squares on the series, the model statsmodels fits as
//! `AutoReg(y, lags=p, trend="c")`. Forecasts run the recursion forward, each step on the
//! ones before it.

use super::linalg::solve_spd;
use super::FitError;

#[derive(Clone, Debug, PartialEq)]
pub struct Ar {
    pub intercept: f64,
    /// a1 ..= ap.
    pub coefficients: Vec<f64>,
}

impl Ar {
    /// Fit AR(`lags`) with an intercept on `y`.
    pub fn fit(y: &[f64], lags: usize) -> Result<Ar, FitError> {
        let k = lags + 1;
        let rows = y.len().saturating_sub(lags);
        if lags == 0 || rows < k + 1 {
            return Err(FitError::TooShort {
                what: format!("an AR({lags})"),
                have: y.len(),
                need: lags + k + 1,
            });
        }
        // Normal equations XᵀX β = Xᵀy, X's rows [1, y[t−1], …, y[t−p]] for t = p..n.
        let mut xtx = vec![vec![0.0f64; k]; k];
        let mut xty = vec![0.0f64; k];
        let mut row = vec![0.0f64; k];
        for t in lags..y.len() {
            row[0] = 1.0;
            for j in 1..=lags {
                row[j] = y[t - j];
            }
            for (a, line) in xtx.iter_mut().enumerate() {
                xty[a] += row[a] * y[t];
                for (b, cell) in line.iter_mut().enumerate() {
                    *cell += row[a] * row[b];
                }
            }
        }
        let beta =
            solve_spd(xtx, xty).ok_or_else(|| FitError::Singular(format!("an AR({lags})")))?;
        Ok(Ar {
            intercept: beta[0],
            coefficients: beta[1..].to_vec(),
        })
    }

    /// The next `steps` values after the end of `history` (which must hold at least the
    /// model's lags: the fitted series, or its latest part).
    pub fn forecast(&self, history: &[f64], steps: usize) -> Vec<f64> {
        let p = self.coefficients.len();
        let mut window: Vec<f64> = history[history.len().saturating_sub(p)..].to_vec();
        let mut out = Vec::with_capacity(steps);
        for _ in 0..steps {
            let next = self.intercept
                + self
                    .coefficients
                    .iter()
                    .zip(window.iter().rev())
                    .map(|(a, y)| a * y)
                    .sum::<f64>();
            out.push(next);
            window.push(next);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_noiseless_ar2_is_recovered_and_continued() {
        // y[t] = 1 + 0.5 y[t−1] − 0.2 y[t−2], from two seeds: exact data, exact fit.
        let mut y = vec![3.0, -1.0];
        for t in 2..40 {
            y.push(1.0 + 0.5 * y[t - 1] - 0.2 * y[t - 2]);
        }
        // Exact recursions converge to the mean and make X singular late on: use the start.
        let m = Ar::fit(&y[..20], 2).unwrap();
        assert!((m.intercept - 1.0).abs() < 1e-6, "{m:?}");
        assert!((m.coefficients[0] - 0.5).abs() < 1e-6 && (m.coefficients[1] + 0.2).abs() < 1e-6);
        let f = m.forecast(&y[..20], 3);
        for (i, v) in f.iter().enumerate() {
            assert!(
                (v - y[20 + i]).abs() < 1e-6,
                "step {i}: {v} against {}",
                y[20 + i]
            );
        }
    }

    #[test]
    fn short_or_constant_series_are_errors() {
        assert!(matches!(
            Ar::fit(&[1.0, 2.0, 3.0], 2),
            Err(FitError::TooShort { .. })
        ));
        assert!(matches!(Ar::fit(&[5.0; 50], 1), Err(FitError::Singular(_))));
        assert!(Ar::fit(&[1.0; 10], 0).is_err());
    }
}
