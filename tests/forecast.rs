//! The forecasters against Python's statsmodels on the same series (drawn from the Azure
//! sample, traces/azure2019: Shahrad et al., USENIX ATC'20; CC-BY 4.0), by
//! `tests/forecast_reference.py`. statsmodels lives in the tools venv that the test command
//! fills (as boto3 does).

// Integration tests drive real processes from plain threads: the time rule of
// `.clippy.toml` is for the host, not for them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::process::Command;

use surge::control::forecast::ar::Ar;
use surge::control::forecast::arima::Arima;
use surge::control::forecast::ets::{Ets, Trend};

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1.0)
}

/// statsmodels' cases of one model (`tests/forecast_reference.py`), or None when the tools
/// venv has no statsmodels (the test then says it skipped, and why).
fn reference(model: &str, test: &str) -> Option<Vec<serde_json::Value>> {
    let py = match common::tools_python("statsmodels") {
        Ok(py) => py,
        Err(why) => {
            common::skip(test, &why);
            return None;
        }
    };
    let out = Command::new(&py)
        .arg(common::repo().join("tests/forecast_reference.py"))
        .arg(common::repo().join("traces/azure2019/500_inv.csv"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|c| c["model"] == model)
            .collect(),
    )
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn linear_regression_on_lags_matches_statsmodels_autoreg() {
    let Some(cases) = reference(
        "ar",
        "linear_regression_on_lags_matches_statsmodels_autoreg",
    ) else {
        return;
    };
    assert!(cases.len() >= 9, "{} cases", cases.len());
    for case in &cases {
        let y: Vec<f64> = case["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let lags = case["lags"].as_u64().unwrap() as usize;
        let want: Vec<f64> = case["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let m = Ar::fit(&y, lags).unwrap_or_else(|e| panic!("AR({lags}): {e}"));
        let got: Vec<f64> = std::iter::once(m.intercept)
            .chain(m.coefficients.iter().copied())
            .collect();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                close(*g, *w, 1e-6),
                "AR({lags}) parameter {i}: {g} against statsmodels' {w}"
            );
        }
        let want: Vec<f64> = case["forecast"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (i, (g, w)) in m.forecast(&y, want.len()).iter().zip(&want).enumerate() {
            assert!(
                close(*g, *w, 1e-6),
                "AR({lags}) step {}: {g} against statsmodels' {w}",
                i + 1
            );
        }
    }
}

/// ETS by maximum likelihood against statsmodels' ETSModel on the same series. The two
/// maximise the same likelihood with different optimisers (augurs: Nelder–Mead, as R's
/// forecast package; statsmodels: L-BFGS-B), on surfaces that are flat along the trend, so
/// they agree on the likelihood they reach (ours at most LOGLIK_SLACK below statsmodels',
/// as −n/2 log SSE) and on the first ETS_STEPS forecasts (an hour of 10-minute buckets) to
/// ETS_TOLERANCE of the series' mean level, not to rounding. Beyond, a trend estimated a
/// little differently drifts apart.
const LOGLIK_SLACK: f64 = 0.25;
const ETS_TOLERANCE: f64 = 0.05;
const ETS_STEPS: usize = 6;

#[test]
fn exponential_smoothing_matches_statsmodels_ets() {
    let Some(cases) = reference("ets", "exponential_smoothing_matches_statsmodels_ets") else {
        return;
    };
    assert!(cases.len() >= 6, "{} cases", cases.len());
    for case in &cases {
        let y = floats(&case["series"]);
        let trend = match case["trend"].as_str().unwrap() {
            "none" => Trend::None,
            _ => Trend::Additive,
        };
        let want = floats(&case["forecast"])[..ETS_STEPS].to_vec();
        let m = Ets::fit(&y, trend).unwrap_or_else(|e| panic!("{trend:?}: {e}"));
        let scale = (y.iter().map(|v| v.abs()).sum::<f64>() / y.len() as f64).max(1.0);
        let got = m.forecast(want.len());
        let theirs = case["loglik"].as_f64().unwrap();
        assert!(
            m.log_likelihood() >= theirs - LOGLIK_SLACK,
            "ETS {trend:?}: log-likelihood {} against statsmodels' {theirs}",
            m.log_likelihood()
        );
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= ETS_TOLERANCE * scale,
                "ETS {trend:?} step {}: {g} against statsmodels' {w} (scale {scale})",
                i + 1
            );
        }
    }
}

/// ARIMA by Hannan–Rissanen against statsmodels' own `hannan_rissanen` (without the bias
/// correction) on the same series and orders: the same two linear solves, so the same
/// parameters to rounding.
#[test]
fn arima_by_hannan_rissanen_matches_statsmodels() {
    let Some(cases) = reference("arima", "arima_by_hannan_rissanen_matches_statsmodels") else {
        return;
    };
    assert!(cases.len() >= 15, "{} cases", cases.len());
    for case in &cases {
        let y = floats(&case["series"]);
        let o: Vec<usize> = floats(&case["order"]).iter().map(|&v| v as usize).collect();
        let m = Arima::fit(&y, o[0], o[1], o[2]).unwrap_or_else(|e| panic!("{o:?}: {e}"));
        for (name, got, want) in [
            ("ar", &m.ar, floats(&case["ar"])),
            ("ma", &m.ma, floats(&case["ma"])),
        ] {
            assert_eq!(got.len(), want.len(), "{o:?} {name}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    close(*g, *w, 1e-6),
                    "ARIMA{o:?} {name}.L{}: {g} against statsmodels' {w}",
                    i + 1
                );
            }
        }
        let want = case["sigma2"].as_f64().unwrap();
        assert!(
            (m.sigma2 - want).abs() <= 1e-6 * want.abs().max(1e-12),
            "ARIMA{o:?} sigma2: {} against statsmodels' {want}",
            m.sigma2
        );
        let f = m.forecast(6);
        assert!(f.iter().all(|v| v.is_finite()), "ARIMA{o:?}: {f:?}");
    }
}
