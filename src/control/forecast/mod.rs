//! Forecasters of a function's load, for the predictive policy: pure models fitted on a
//! series and asked for the next steps, with no clock and no I/O. Each is checked against
//! Python's statsmodels on the same series (`tests/forecast.rs`).

pub mod ar;
pub mod arima;
pub mod ets;
pub mod linalg;
pub mod select;

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
    #[error("{0} needs finite values: the series holds a NaN or an infinity")]
    NotFinite(String),
    #[error("{0} could not be fitted: {1}")]
    Failed(String, String),
}
