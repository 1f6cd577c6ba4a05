//! surge: a Lambda-style host for WebAssembly functions.
//!
//! Data path: [`gateway`] → [`registry::routes`] → [`dispatch`] → sandbox (in `surge-runtime`).
//! Control path: [`registry`] (deploy/remove) → [`control`] (sandbox processes, cgroups).

pub mod cli;
pub mod control;
pub mod dispatch;
pub mod gateway;
pub mod manifest;
pub mod metrics;
pub mod registry;
