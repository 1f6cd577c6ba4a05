//! Forecasters of a function's load, for the predictive policy: pure models fitted on a
//! series and asked for the next steps, with no clock and no I/O. Each is checked against
//! Python's statsmodels on the same series (`tests/forecast.rs`).

pub mod ar;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FitError {
    #[error("{have} points are too few to fit {what} (it needs at least {need})")]
    TooShort {
        what: String,
        have: usize,
        need: usize,
    },
    #[error(
        "the series does not determine {0}: its regressors are collinear (a constant series?)"
    )]
    Singular(String),
}
