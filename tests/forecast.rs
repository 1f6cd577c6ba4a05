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

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1.0)
}

#[test]
fn linear_regression_on_lags_matches_statsmodels_autoreg() {
    let py = match common::tools_python("statsmodels") {
        Ok(py) => py,
        Err(why) => {
            return common::skip(
                "linear_regression_on_lags_matches_statsmodels_autoreg",
                &why,
            )
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
    let cases: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
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
