//! surge: a Lambda-style host for WebAssembly functions.
//!
//! Data path: [`gateway`] → [`dispatch::routes`] → [`dispatch`] (deployment, gate,
//! transport) → sandbox → exec (in `surge-runtime`).
//! Control path: [`registry`] (deploy/remove) → [`control`] (autoscale, vertical, node,
//! supervisor) → [`dispatch`], which it reads and feeds but which never points back up.
//! Observability: [`observe`] (invocation records, the dashboard's timeline) beside both.

#![deny(unsafe_code)]

pub mod aws;
pub mod cli;
pub mod cluster;
pub mod control;
pub mod dispatch;
pub mod events;
pub mod gateway;
pub mod manifest;
pub mod metrics;
pub mod observe;
pub mod registry;
pub mod replay;
