//! ARIMA(p, d, q) by the Hannan–Rissanen procedure (Brockwell and Davis, "Introduction to
//! Time Series and Forecasting", 2016, section 5.1.4), the estimator statsmodels implements
//! as `hannan_rissanen` and `ARIMA(...).fit(method="hannan_rissanen")`:
//!
//! 1. difference the series `d` times and take its mean off;
//! 2. fit a long AR (order ⌊ln n⌋², at least 2·max(p, q)) by Yule–Walker with the
//!    maximum-likelihood autocovariances (denominator n), and keep its residuals as
//!    estimates of the innovations;
//! 3. regress the series on its own p lags and the innovations' q lags by least squares.
//!
//! With q = 0 it is least squares on the lags alone. It is two linear solves, so it is cheap
//! enough to refit online at every observation, which is what a keep-alive policy needs;
//! its third, bias-correcting step (a further regression on filtered series) is left out,
//! as `unbiased=False` does. Forecasts run the ARMA recursion on the last values and
//! innovations, with future innovations 0, then add the mean back and undo the differences.

use super::linalg::{ols, solve_spd};
use super::FitError;

#[derive(Clone, Debug, PartialEq)]
pub struct Arima {
    pub p: usize,
    pub d: usize,
    pub q: usize,
    /// The mean of the differenced series, taken off before the ARMA fit.
    pub mean: f64,
    /// φ1 ..= φp and θ1 ..= θq.
    pub ar: Vec<f64>,
    pub ma: Vec<f64>,
    /// The innovations' variance: the regression's residual sum of squares over its degrees
    /// of freedom.
    pub sigma2: f64,
    /// For forecasting: the last value of each differencing level (level 0 the series),
    /// the demeaned differenced series and its residuals (newest last).
    last_levels: Vec<f64>,
    x: Vec<f64>,
    resid: Vec<f64>,
}

fn diff(y: &[f64]) -> Vec<f64> {
    y.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Yule–Walker with autocovariances over n (statsmodels' `method="mle"`), on `x` less its
/// own mean.
fn yule_walker(x: &[f64], order: usize) -> Option<Vec<f64>> {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let xm: Vec<f64> = x.iter().map(|v| v - m).collect();
    let r: Vec<f64> = (0..=order)
        .map(|k| {
            xm[..xm.len() - k]
                .iter()
                .zip(&xm[k..])
                .map(|(a, b)| a * b)
                .sum::<f64>()
                / n
        })
        .collect();
    let toeplitz = (0..order)
        .map(|i| (0..order).map(|j| r[i.abs_diff(j)]).collect())
        .collect();
    solve_spd(toeplitz, r[1..].to_vec())
}

impl Arima {
    pub fn fit(y: &[f64], p: usize, d: usize, q: usize) -> Result<Arima, FitError> {
        let what = || format!("an ARIMA({p},{d},{q})");
        if y.iter().any(|v| !v.is_finite()) {
            return Err(FitError::NotFinite(what()));
        }
        let mut levels = vec![y.to_vec()];
        for _ in 0..d {
            let next = diff(levels.last().map_or(&[][..], |l| l.as_slice()));
            levels.push(next);
        }
        let w = levels.last().cloned().unwrap_or_default();
        let n = w.len();
        let long = ((n.max(1) as f64).ln().powi(2).floor() as usize).max(2 * p.max(q));
        let start = if q > 0 { long + q } else { p };
        // At least one observation per parameter, and one more.
        let need = start + p + q + 2;
        if n < need {
            return Err(FitError::TooShort {
                what: what(),
                have: y.len(),
                need: need + d,
            });
        }
        let mean = w.iter().sum::<f64>() / n as f64;
        let x: Vec<f64> = w.iter().map(|v| v - mean).collect();
        // Innovations: the long AR's residuals, for t = long ..= n−1 (q > 0 only).
        let innov: Vec<f64> = if q > 0 {
            let phi = yule_walker(&x, long).ok_or_else(|| FitError::Singular(what()))?;
            (long..n)
                .map(|t| x[t] - (1..=long).map(|i| phi[i - 1] * x[t - i]).sum::<f64>())
                .collect()
        } else {
            Vec::new()
        };
        let (ar, ma, resid, sigma2) = if p == 0 && q == 0 {
            let var = x.iter().map(|v| v * v).sum::<f64>() / n as f64;
            (Vec::new(), Vec::new(), x.clone(), var)
        } else {
            let rows: Vec<Vec<f64>> = (start..n)
                .map(|t| {
                    (1..=p)
                        .map(|i| x[t - i])
                        .chain((1..=q).map(|j| innov[t - long - j]))
                        .collect()
                })
                .collect();
            let target = &x[start..];
            let beta = ols(&rows, target).ok_or_else(|| FitError::Singular(what()))?;
            let resid: Vec<f64> = rows
                .iter()
                .zip(target)
                .map(|(r, v)| v - r.iter().zip(&beta).map(|(a, b)| a * b).sum::<f64>())
                .collect();
            let dof = (resid.len() - beta.len()) as f64;
            let sigma2 = resid.iter().map(|e| e * e).sum::<f64>() / dof;
            (beta[..p].to_vec(), beta[p..].to_vec(), resid, sigma2)
        };
        Ok(Arima {
            p,
            d,
            q,
            mean,
            ar,
            ma,
            sigma2,
            last_levels: levels[..d].iter().map(|l| l[l.len() - 1]).collect(),
            x,
            resid,
        })
    }

    /// The next `steps` values of the fitted series.
    pub fn forecast(&self, steps: usize) -> Vec<f64> {
        let mut x = self.x.clone();
        let mut e = self.resid.clone();
        let mut out = Vec::with_capacity(steps);
        for _ in 0..steps {
            let t = x.len();
            let ar: f64 = (1..=self.p).map(|i| self.ar[i - 1] * x[t - i]).sum();
            let ma: f64 = (1..=self.q)
                .filter_map(|j| e.len().checked_sub(j).map(|k| self.ma[j - 1] * e[k]))
                .sum();
            x.push(ar + ma);
            e.push(0.0);
            out.push(ar + ma + self.mean);
        }
        // Undo the differences, from the innermost level out.
        for &last in self.last_levels.iter().rev() {
            let mut level = last;
            for v in out.iter_mut() {
                level += *v;
                *v = level;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ar_without_noise_is_recovered_and_continued() {
        // x[t] = 0.6 x[t−1] − 0.3 x[t−2] around a mean of 10: exact data, exact fit.
        let mut y = vec![12.0, 7.0];
        for t in 2..80 {
            y.push(10.0 + 0.6 * (y[t - 1] - 10.0) - 0.3 * (y[t - 2] - 10.0));
        }
        let m = Arima::fit(&y, 2, 0, 0).unwrap();
        // The sample mean is not exactly 10 (the transient), so allow a little.
        assert!(
            (m.ar[0] - 0.6).abs() < 1e-2 && (m.ar[1] + 0.3).abs() < 1e-2,
            "{:?}",
            m.ar
        );
        let f = m.forecast(3);
        assert!((f[0] - y[79]).abs() < 0.05, "{f:?}");
    }

    #[test]
    fn a_linear_trend_is_continued_through_the_difference() {
        let y: Vec<f64> = (0..60).map(|t| 5.0 + 2.0 * t as f64).collect();
        let m = Arima::fit(&y, 0, 1, 0).unwrap();
        assert_eq!(m.mean, 2.0);
        assert_eq!(m.forecast(3), vec![125.0, 127.0, 129.0]);
    }

    #[test]
    fn too_short_or_not_finite_is_refused_by_name() {
        let e = Arima::fit(&[1.0, 2.0, 3.0], 1, 1, 1).unwrap_err();
        assert!(e.to_string().contains("ARIMA(1,1,1)"), "{e}");
        let e = Arima::fit(&[1.0, f64::NAN, 3.0], 1, 0, 0).unwrap_err();
        assert!(e.to_string().contains("NaN"), "{e}");
    }
}
